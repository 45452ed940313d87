import threading

import pytest

import flamingo


@pytest.fixture(autouse=True)
def restore_logging():
    yield
    flamingo.set_log_callback(None)
    flamingo.set_log_level(flamingo.LogLevel.WARN)


def test_set_and_clear():
    flamingo.set_log_callback(lambda level, msg: None)
    flamingo.set_log_level("debug")
    flamingo.set_log_level(flamingo.LogLevel.NONE)
    flamingo.set_log_level(99)  # clamped to NONE by the library
    flamingo.set_log_callback(None)
    with pytest.raises(ValueError):
        flamingo.set_log_level("loud")


def test_callback_receives_load_messages(any_fixture_dir):
    got = []
    lock = threading.Lock()

    def sink(level, message):
        with lock:
            got.append((level, message))

    flamingo.set_log_callback(sink)
    flamingo.set_log_level(flamingo.LogLevel.INFO)
    with flamingo.Model.load(any_fixture_dir):
        pass
    assert got, "no log message at level INFO while loading a model"
    for level, message in got:
        assert isinstance(level, flamingo.LogLevel) and level >= flamingo.LogLevel.INFO
        assert isinstance(message, str) and message and not message.endswith("\n")

    # NONE silences everything; WARN drops the INFO messages of a load.
    for quiet in (flamingo.LogLevel.NONE, flamingo.LogLevel.WARN):
        got.clear()
        flamingo.set_log_level(quiet)
        with flamingo.Model.load(any_fixture_dir):
            pass
        assert all(level >= quiet for level, _ in got), (quiet, got)

    # After clearing, the Python callback is no longer called.
    flamingo.set_log_level(flamingo.LogLevel.INFO)
    flamingo.set_log_callback(None)
    got.clear()
    with flamingo.Model.load(any_fixture_dir):
        pass
    assert got == []


def test_callback_exception_does_not_propagate(any_fixture_dir, capsys):
    def sink(level, message):
        raise RuntimeError("boom")

    flamingo.set_log_callback(sink)
    flamingo.set_log_level(flamingo.LogLevel.INFO)
    with flamingo.Model.load(any_fixture_dir) as m:
        assert m.info.architecture == "openflamingo"
    assert "boom" in capsys.readouterr().err
