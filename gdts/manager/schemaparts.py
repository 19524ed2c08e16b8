"""JSON Schema pieces the answer schemas share (gdts.manager.apischemas and
gdts.manager.securityschemas)."""

NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_INT = {"type": ["integer", "null"]}
NULLABLE_NUMBER = {"type": ["number", "null"]}
