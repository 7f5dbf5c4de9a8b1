"""Golden-fixture discovery: a checkout without fixtures skips, a VAPI_FIXTURES_DIR without any fails."""
from fixture_utils import MissingFixtures, fixture_params


def test_unset_dir_without_fixtures_skips(monkeypatch, tmp_path):
    monkeypatch.delenv("VAPI_FIXTURES_DIR", raising=False)
    monkeypatch.setattr("fixture_utils.REPO_ROOT", tmp_path / "repo")
    (case,) = fixture_params("llamagen_gpt")
    assert case.values == (None,) and case.marks[0].name == "skip"


def test_set_dir_without_fixtures_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("VAPI_FIXTURES_DIR", str(tmp_path))
    (case,) = fixture_params("llamagen_gpt")
    assert isinstance(case.values[0], MissingFixtures) and not case.marks
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"kind": "llamagen_vq"}')
    (case,) = fixture_params("llamagen_gpt")  # fixtures of other kinds only: this kind is skipped
    assert case.marks[0].name == "skip"
