"""Notifications: channels operators are told through, the rules that say when, and the
delivery that tells them once (see README, "Notifications")."""
