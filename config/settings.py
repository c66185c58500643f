"""Service settings, read from the environment when (and only when) `Settings()` is created."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Tracker = Literal["github", "jira"]
ALL_TRACKERS: tuple[Tracker, ...] = ("github", "jira")
REDIS_SCHEMES = ("redis://", "rediss://")
LogFormat = Literal["json", "text"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _comma_list(value: object) -> object:
    return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value


class Settings(BaseSettings):
    """Every environment variable the service reads; README.md lists them with examples."""

    model_config = SettingsConfigDict(env_prefix="SOPGUARD_", extra="ignore", frozen=True)

    policy: Path | None = Field(default=None, description="Policy file; the embedded SOP policy if unset.")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    data_dir: Path = Path("var")
    database_url: str = Field(default="", description="SQLAlchemy URL; SQLite in data_dir if unset.")
    queue_url: str = Field(
        default="",
        description="redis://host:port/db to keep the inbox in Redis; in the database if unset.",
    )
    workers: int = Field(default=2, ge=0, description="Queue consumer threads in `serve`; 0 = web only.")
    trackers: Annotated[list[Tracker], NoDecode] = Field(default_factory=lambda: list(ALL_TRACKERS))
    service_accounts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Logins/account ids of this service's own tracker account."
    )
    max_body_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    dry_run: bool = False
    insecure_dev: bool = Field(default=False, description="Accept unsigned deliveries (development only).")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    log_format: LogFormat | None = Field(
        default=None,
        description="json or text; unset: JSON under gunicorn, text on a terminal, JSON otherwise.",
    )
    report_token: str = Field(
        default="", description="Token that opens GET /report (bearer or basic-auth password); off if unset."
    )
    github_webhook_secret: str = Field(
        default="", validation_alias=AliasChoices("GITHUB_WEBHOOK_SECRET", "SOPGUARD_GITHUB_WEBHOOK_SECRET")
    )
    jira_webhook_secret: str = Field(
        default="", validation_alias=AliasChoices("JIRA_WEBHOOK_SECRET", "SOPGUARD_JIRA_WEBHOOK_SECRET")
    )
    github_token: str = Field(default="", validation_alias="GITHUB_TOKEN")
    github_app_id: str = Field(default="", validation_alias="GITHUB_APP_ID")
    github_app_private_key: str = Field(default="", validation_alias="GITHUB_APP_PRIVATE_KEY")
    github_app_private_key_path: Path | None = Field(
        default=None, validation_alias="GITHUB_APP_PRIVATE_KEY_PATH"
    )
    github_api_url: str = Field(default="https://api.github.com", validation_alias="GITHUB_API_URL")
    jira_url: str = Field(default="", validation_alias="JIRA_URL")
    jira_email: str = Field(default="", validation_alias="JIRA_EMAIL")
    jira_api_token: str = Field(default="", validation_alias="JIRA_API_TOKEN")
    jira_pat: str = Field(default="", validation_alias="JIRA_PAT")
    tracker_timeout: float = Field(default=15.0, gt=0, description="Seconds before a tracker call times out.")
    retry_horizon: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds a delivery is retried after a tracker failure before it fails.",
    )
    turn_lease: float = Field(
        default=60.0, gt=0, description="Seconds a worker's turn on an issue lasts unless renewed."
    )
    poll_interval: float = Field(
        default=0.05, gt=0, description="Seconds an idle consumer waits before looking at the inbox again."
    )

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in ("trackers", "service_accounts"):
                if key in data:
                    data[key] = _comma_list(data[key])
        return data

    @field_validator("queue_url")
    @classmethod
    def _redis_or_unset(cls, url: str) -> str:
        """Checked when the settings are read, so a wrong URL stops `serve` and every command at once."""
        if url and not url.startswith(REDIS_SCHEMES):
            raise ValueError(
                "SOPGUARD_QUEUE_URL must be a redis:// or rediss:// URL, or unset to keep the inbox "
                f"in the database (SOPGUARD_DATABASE_URL): got {url!r}"
            )
        return url

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        if level.upper() not in LOG_LEVELS:
            raise ValueError(
                f"SOPGUARD_LOG_LEVEL={level!r} is not a level: use one of {', '.join(LOG_LEVELS)}"
            )
        return level.upper()

    @property
    def github_configured(self) -> bool:
        return bool(self.github_token or (self.github_app_id and self._has_app_key))

    @property
    def _has_app_key(self) -> bool:
        return bool(self.github_app_private_key or self.github_app_private_key_path)

    @property
    def jira_configured(self) -> bool:
        return bool(self.jira_url and (self.jira_pat or (self.jira_email and self.jira_api_token)))

    def secret_for(self, tracker: Tracker) -> str:
        return self.github_webhook_secret if tracker == "github" else self.jira_webhook_secret

    def unsigned_trackers(self) -> list[Tracker]:
        """Enabled trackers whose deliveries cannot be verified, because no secret is set."""
        return [t for t in self.trackers if not self.secret_for(t)]

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'sopguard.db'}"

    @property
    def resolved_queue_url(self) -> str:
        """Where the inbox lives: `""` for the store's database, else a Redis URL."""
        return self.queue_url
