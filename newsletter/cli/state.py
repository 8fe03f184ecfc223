"""What every command may need, opened only when it asks: `init` has no config yet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import typer
from sqlalchemy.engine import Engine

from newsletter import registry
from newsletter.audience.tokens import load_key
from newsletter.config import Config, ConfigLocation, load_config, missing_config
from newsletter.db import open_database
from newsletter.delivery.transport import Transport, open_transport


@dataclass
class State:
    location: ConfigLocation
    _config: Config | None = field(default=None, repr=False)
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def config_file(self) -> Path:
        return self.location.path

    def config(self) -> Config:
        if self._config is None:
            if not self.location.path.is_file():
                raise missing_config(self.location)
            self._config = load_config(self.location.path)
        return self._config

    def engine(self) -> Engine:
        if self._engine is None:
            config = self.config()
            self._engine = open_database(config.database_url)
            registry.record(self._engine, config)
        return self._engine

    def key(self) -> bytes:
        return load_key(self.config().signing_key_file)

    def transports(self, url: str | None = None) -> Callable[[], Transport]:
        """A maker of the transport to send with (`url`, else the config's): opened once
        here, so a bad URL or a missing secret is a usage error now, not per connection."""
        config = self.config()
        chosen = url or config.transport
        with open_transport(chosen, config.root):  # a bad URL is said before any work
            pass
        return lambda: open_transport(chosen, config.root)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def state(ctx: typer.Context) -> State:
    found = ctx.find_object(State)
    assert found is not None, "the root callback sets the state"
    return found
