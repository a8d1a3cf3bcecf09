"""One unit of work: services add and flush, and only `loyalty.unit_of_work` commits, once per request, command or
batch of a job."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlalchemy import func, select

from loyalty.extensions import db
from loyalty.tiers.models import Tier
from loyalty.unit_of_work import SAME_BATCH, Batches, run_batches, unit_of_work

PACKAGE = Path(__file__).resolve().parent.parent / "loyalty"
ALLOWED = {PACKAGE / "unit_of_work.py"}


def commits_in(path: Path) -> list[int]:
    """The lines of `path` that call a `.commit()` of anything: a session's, a connection's, a transaction's."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "commit"]


def stray_commits(package: Path) -> list[str]:
    return [f"{path.relative_to(package.parent)}:{line}" for path in sorted(package.rglob("*.py"))
            if path not in ALLOWED for line in commits_in(path)]


def test_nothing_in_the_package_commits_but_the_unit_of_work():
    assert stray_commits(PACKAGE) == []


def test_the_scan_finds_a_commit_planted_anywhere(tmp_path: Path):
    planted = tmp_path / "loyalty" / "members"
    planted.mkdir(parents=True)
    (planted / "service.py").write_text("from loyalty.extensions import db\n\n\ndef enrol():\n"
                                        "    db.session.add(object())\n    db.session.commit()\n")
    (planted / "clean.py").write_text("def flush(session):\n    session.flush()\n")
    assert stray_commits(tmp_path / "loyalty") == ["loyalty/members/service.py:6"]


def _tier(code: str, rank: int) -> Tier:
    tier = Tier(code=code, name=code.title(), rank=rank, threshold=rank * 100, basis="points", window_days=365)
    db.session.add(tier)
    db.session.flush()
    return tier


def _tiers() -> int:
    return db.session.scalar(select(func.count()).select_from(Tier))


def test_a_block_that_ends_normally_is_committed(in_app):
    with in_app():
        with unit_of_work():
            _tier("member", 0)
        db.session.rollback()
        assert _tiers() == 1


def test_a_block_that_raises_is_rolled_back_and_the_error_goes_on(in_app):
    with in_app():
        with pytest.raises(LookupError), unit_of_work():
            _tier("member", 0)
            raise LookupError("no such thing")
        assert _tiers() == 0


def test_a_discarded_block_is_rolled_back(in_app):
    with in_app():
        with unit_of_work() as work:
            _tier("member", 0)
            work.discard()
        assert _tiers() == 0


def _one_tier_a_batch(count: int, fail_at: int | None = None) -> Batches:
    for rank in range(count):
        if rank == fail_at:
            _tier(f"half-{rank}", rank)
            raise RuntimeError("the worker died")
        _tier(f"tier-{rank}", rank)
        yield SAME_BATCH  # a transaction that does not end the batch
        yield {"tiers": 1}


def test_each_batch_is_committed_on_its_own_and_a_crash_keeps_the_batches_done(in_app):
    with in_app():
        with pytest.raises(RuntimeError):
            run_batches(_one_tier_a_batch(5, fail_at=3), {"tiers": 0})
        assert _tiers() == 3
        db.session.execute(db.delete(Tier))
        db.session.commit()
        assert run_batches(_one_tier_a_batch(4), {"tiers": 0}) == {"tiers": 4}
        assert _tiers() == 4


def test_told_to_stop_it_finishes_the_batch_in_hand_and_answers_what_it_did(in_app):
    asked = []

    def keep_going() -> bool:
        asked.append(True)
        return len(asked) <= 2

    with in_app():
        assert run_batches(_one_tier_a_batch(5), {"tiers": 0}, keep_going) == {"tiers": 2}
        assert _tiers() == 2
    assert len(asked) == 3  # before each batch, never between the transactions of one


def test_nothing_to_do_answers_the_zero_counts(in_app):
    with in_app():
        assert run_batches(_one_tier_a_batch(0), {"tiers": 0}) == {"tiers": 0}
