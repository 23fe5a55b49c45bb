"""The config file edit: only one model's policy and labels change; comments, layout and others stay."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlserve.rollout import configfile, history

TEXT = """# my servers
model_config_list {
  # the digits, hand-tuned
  config {
    name: "digits"   # the course model
    base_path: "/srv/models/digits"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 2 } }  # the old policy
    version_labels { key: "stable" value: 1 }
  }
  config: { name: 'other' base_path: '/srv/models/other' }
}
"""


def _labels(text: str, model: str) -> tuple[dict[str, int], tuple[int, ...]]:
    state = configfile.model_state(configfile.parse(text, "t"), model, "/t")
    return state.labels, state.policy_versions


def test_render_replaces_policy_and_labels_and_keeps_everything_else() -> None:
    out = configfile.render(TEXT, "t", "digits", [1, 2], {"stable": 2, "canary": 1})
    assert _labels(out, "digits") == ({"stable": 2, "canary": 1}, (1, 2))
    assert _labels(out, "other") == ({}, ())
    for kept in ("# my servers", "# the digits, hand-tuned", 'name: "digits"   # the course model',
                 "config: { name: 'other' base_path: '/srv/models/other' }"):
        assert kept in out
    assert "latest" not in out and "# the old policy" not in out  # the replaced field's own comment goes
    # editing twice is stable: the second edit of the same values changes nothing
    assert configfile.render(out, "t", "digits", [1, 2], {"stable": 2, "canary": 1}) == out


def test_render_adds_fields_to_an_entry_that_had_none_and_to_a_one_line_entry() -> None:
    out = configfile.render(TEXT, "t", "other", [3], {"stable": 3})
    assert _labels(out, "other") == ({"stable": 3}, (3,))
    assert _labels(out, "digits") == ({"stable": 1}, ())
    assert "# the old policy" in out  # the other model's entry is untouched


def test_render_falls_back_to_the_proto_printer_for_layouts_it_cannot_edit() -> None:
    text = 'model_config_list { config: [{ name: "a" base_path: "/a" }, { name: "b" base_path: "/b" }] }'
    out = configfile.render(text, "t", "b", [1], {"stable": 1})
    assert _labels(out, "b") == ({"stable": 1}, (1,))
    assert _labels(out, "a") == ({}, ())


def test_a_file_that_does_not_parse_is_refused_with_a_hint(tmp_path: Path) -> None:
    from mlserve.errors import DataError

    with pytest.raises(DataError, match="does not parse") as e:
        configfile.parse("model_config_list { config { name: ", "bad.config")
    assert ".bak" in (e.value.hint or "")


def test_lock_refuses_a_second_holder_and_says_who_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_text(TEXT)
    with configfile.locked(path, "promote digits stable -> 2"):
        with pytest.raises(configfile.RolloutLockedError, match=r"promote digits stable -> 2 \(pid \d+"):
            with configfile.locked(path, "promote digits stable -> 3"):
                pass
    with configfile.locked(path, "again"):  # released: the next command gets it
        pass


def test_history_rollback_walks_back_through_promotes() -> None:
    def move(frm: int | None, to: int, action: str = "promote", label: str = "stable") -> history.Move:
        return history.Move("m", label, frm, to, action, "me")

    moves = [move(None, 1), move(1, 2), move(None, 3, "canary", "canary"), move(2, 3)]
    assert history.previous_stable(moves) == 2
    moves.append(move(3, 2, "rollback"))
    assert history.previous_stable(moves) == 1
    moves.append(move(2, 1, "rollback"))
    assert history.previous_stable(moves) is None
    assert json.loads(json.dumps(moves[0].as_dict()))["from"] is None


def test_managed_config_is_fresh_then_kept_with_its_labels(tmp_path: Path) -> None:
    from mlserve.rollout import managed

    base = tmp_path / "models" / "digits"
    base.mkdir(parents=True)
    path = managed.ensure(tmp_path / "home", "digits", base)
    state = configfile.model_state(configfile.parse(path.read_text(), "m"), "digits", str(path))
    assert (state.base_path, state.policy_kind, state.labels) == (str(base), "latest", {})
    assert not managed.has_labels(path)
    path.write_text(configfile.render(path.read_text(), "m", "digits", [1], {"stable": 1}))
    assert managed.ensure(tmp_path / "home", "digits", base) == path  # same base path: kept
    assert managed.has_labels(path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    managed.ensure(tmp_path / "home", "digits", other)  # another base path: fresh, old text in .bak
    assert not managed.has_labels(path) and managed.has_labels(configfile.backup_path(path))
