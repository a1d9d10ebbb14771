"""Settings: an INI file named by ATOMMQ_CONFIG, overridden by ATOMMQ_* variables."""

import re
from pathlib import Path

import pytest

from atommq import config
from atommq.errors import ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"


def test_ini_file_is_read_and_environment_overrides_it(tmp_path):
    ini = tmp_path / "atommq.ini"
    ini.write_text("[atommq]\npage_size = 50\nmax_body_bytes = 2048\nlog_level = info\n")
    settings = config.load({"ATOMMQ_CONFIG": str(ini), "ATOMMQ_PAGE_SIZE": "7"})
    assert settings.page_size == 7
    assert settings.max_body_bytes == 2048
    assert settings.log_level == "INFO"


def test_defaults_put_the_database_in_the_users_data_folder():
    settings = config.load({})
    assert settings.page_size == 1000
    assert settings.max_body_bytes == 1024 * 1024
    home = Path("~").expanduser()
    assert settings.database_url == f"sqlite:///{home}/.local/share/atommq/atommq.db"
    assert config.load({"XDG_DATA_HOME": "/srv/data"}).database_url == "sqlite:////srv/data/atommq/atommq.db"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[atommq]\npagesize = 5\n", "setting pagesize"),
        ("[other]\npage_size = 5\n", "no [atommq] section"),
        ("page_size = 5\n", "not a valid INI file"),
        ("[atommq]\npage_size = 0\n", "setting page_size: '0' is out of range"),
    ],
)
def test_bad_ini_file_is_refused_with_a_message_naming_the_setting(tmp_path, text, message):
    ini = tmp_path / "atommq.ini"
    ini.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.load({"ATOMMQ_CONFIG": str(ini)})


def test_missing_ini_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        config.load({"ATOMMQ_CONFIG": str(tmp_path / "nope.ini")})


def test_readme_documents_every_setting():
    text = README.read_text("utf-8")
    for name in config.NAMES:
        assert f"`{name}`" in text and f"`ATOMMQ_{name.upper()}`" in text, name
