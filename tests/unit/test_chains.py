"""What a chain run is made of and what it runs next (gdts.chains). Pure, with literal links."""

from __future__ import annotations

import pytest

from gdts.chains import (
    MAX_LEVELS,
    MAX_WIDTH,
    REQUESTED,
    SUCCEEDED,
    ChainError,
    Links,
    check_graph,
    expand,
    finished,
    never_started,
    runnable,
)


def graph(**links: Links) -> dict[str, Links]:
    return links


def of(links: dict[str, Links]):  # noqa: ANN202 (a lookup in the shape expand takes)
    return links.get


def test_serial_parents_then_the_job_then_parallel_children() -> None:
    jobs = graph(
        j=Links(parents=("p1", "p2"), children=("c1", "c2"), children_mode="parallel"),
        p1=Links(), p2=Links(), c1=Links(), c2=Links(),
    )  # fmt: skip
    plan = expand("j", of(jobs))
    assert plan.steps == ("p1", "p2", "j", "c1", "c2") and plan.head == 2
    outcomes: dict[int, str] = {}
    assert runnable(plan.tree, outcomes) == [0]
    outcomes[0] = REQUESTED
    assert runnable(plan.tree, outcomes) == []
    outcomes[0] = SUCCEEDED
    assert runnable(plan.tree, outcomes) == [1]
    outcomes[1] = SUCCEEDED
    assert runnable(plan.tree, outcomes) == [2]
    outcomes[2] = SUCCEEDED
    assert runnable(plan.tree, outcomes) == [3, 4]  # the children at once
    outcomes[3] = outcomes[4] = REQUESTED
    outcomes[4] = SUCCEEDED
    assert runnable(plan.tree, outcomes) == [] and not finished(plan, outcomes)
    outcomes[3] = SUCCEEDED
    assert finished(plan, outcomes) and never_started(plan, outcomes) == []


def test_parallel_parents_start_together_and_the_job_waits_for_all() -> None:
    jobs = graph(j=Links(parents=("a", "b", "c"), parents_mode="parallel"),
                 a=Links(), b=Links(), c=Links())  # fmt: skip
    plan = expand("j", of(jobs))
    assert runnable(plan.tree, {}) == [0, 1, 2]
    assert runnable(plan.tree, {0: SUCCEEDED, 1: SUCCEEDED, 2: REQUESTED}) == []
    assert runnable(plan.tree, {0: SUCCEEDED, 1: SUCCEEDED, 2: SUCCEEDED}) == [3]


def test_a_failed_parent_stops_the_chain_and_what_is_left_is_never_started() -> None:
    jobs = graph(j=Links(parents=("p",), children=("c1", "c2")), p=Links(), c1=Links(),
                 c2=Links())  # fmt: skip
    plan = expand("j", of(jobs))
    outcomes = {0: "failed"}
    assert runnable(plan.tree, outcomes) == [] and finished(plan, outcomes)
    assert never_started(plan, outcomes) == [1, 2, 3]
    # A failing child stops the later children, not those before it.
    outcomes = {0: SUCCEEDED, 1: SUCCEEDED, 2: "timeout"}
    assert runnable(plan.tree, outcomes) == [] and never_started(plan, outcomes) == [3]
    # A parallel sibling still running keeps the run unfinished until it ends.
    par = expand("k", of(graph(k=Links(children=("x", "y"), children_mode="parallel"),
                               x=Links(), y=Links())))  # fmt: skip
    assert not finished(par, {0: SUCCEEDED, 1: "failed", 2: REQUESTED})
    assert finished(par, {0: SUCCEEDED, 1: "failed", 2: SUCCEEDED})


def test_ancestors_and_descendants_expand_recursively() -> None:
    jobs = graph(
        j=Links(parents=("p",), children=("c",)),
        p=Links(parents=("gp",)), gp=Links(), c=Links(children=("gc",)), gc=Links(),
    )  # fmt: skip
    plan = expand("j", of(jobs))
    assert plan.steps == ("gp", "p", "j", "c", "gc")
    order = []
    outcomes: dict[int, str] = {}
    while step := runnable(plan.tree, outcomes):
        order += step
        outcomes.update(dict.fromkeys(step, SUCCEEDED))
    assert [plan.steps[i] for i in order] == ["gp", "p", "j", "c", "gc"]


def test_a_cycle_an_unknown_name_and_too_deep_or_wide_are_refused_naming_the_field() -> None:
    mutual = graph(a=Links(children=("b",)), b=Links(children=("a",)))
    with pytest.raises(ChainError) as raised:
        check_graph("a", mutual["a"], mutual)
    assert raised.value.field == "children" and "a -> b -> a" in raised.value.problem
    # A cycle through both kinds of link: p runs before j, and j before p.
    mixed = graph(j=Links(parents=("p",)), p=Links())
    with pytest.raises(ChainError) as raised:
        check_graph("j", Links(parents=("p",), children=("p",)), mixed)
    assert "reach itself" in raised.value.problem
    with pytest.raises(ChainError) as raised:
        check_graph("j", Links(parents=("ghost",)), graph(j=Links()))
    assert raised.value.field == "parents" and "'ghost'" in raised.value.problem
    with pytest.raises(ChainError) as raised:
        check_graph("j", Links(children=("j",)), graph(j=Links()))
    assert raised.value.field == "children"
    # Eleven levels: a line of ten parents above the job.
    line = {f"l{i}": Links(parents=(f"l{i + 1}",)) for i in range(MAX_LEVELS - 1)}
    line[f"l{MAX_LEVELS - 1}"] = Links()
    assert len(expand("l0", of(line)).steps) == MAX_LEVELS
    line[f"l{MAX_LEVELS - 1}"] = Links(parents=("top",))
    with pytest.raises(ChainError) as raised:
        expand("l0", of({**line, "top": Links()}))
    assert "levels" in raised.value.problem and raised.value.field == "parents"
    wide = {f"w{i}": Links() for i in range(MAX_WIDTH + 1)}
    with pytest.raises(ChainError) as raised:
        check_graph("j", Links(children=tuple(wide), children_mode="parallel"),
                    {**wide, "j": Links()})  # fmt: skip
    assert raised.value.field == "children" and str(MAX_WIDTH) in raised.value.problem
    assert len(expand("j", of({**wide, "j": Links(children=tuple(wide)[:MAX_WIDTH])})).steps) \
        == MAX_WIDTH + 1  # fmt: skip


def test_a_save_that_makes_another_jobs_chain_too_deep_is_refused_too() -> None:
    # l9 tops a line of ten; one more parent above it makes the chain of the line's bottom
    # span eleven levels, although l9's own chain spans two.
    line = {f"l{i}": Links(parents=(f"l{i + 1}",)) for i in range(MAX_LEVELS - 1)}
    line[f"l{MAX_LEVELS - 1}"] = Links()
    line["extra"] = Links()
    with pytest.raises(ChainError) as raised:
        check_graph("l9", Links(parents=("extra",)), line)
    assert "levels" in raised.value.problem
