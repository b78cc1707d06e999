"""Secrets (pseudonymization keys, archive passwords) from a file or an environment variable, never from
orthanc.json itself and never echoed in an error."""
from __future__ import annotations

from typing import Mapping

from courier.config.reader import Section, resolve
from courier.errors import ConfigError

MIN_SECRET_BYTES = 16


def read_secret(section: Section, path: str, base_dir: str, environ: Mapping[str, str],
                names: tuple[str, str] = ("SecretFile", "SecretEnv"), minimum: int = MIN_SECRET_BYTES) -> bytes:
    """A secret from a file or an environment variable (exactly one); never echoed in errors."""
    file_key, env_key = names
    file_name = section.get(file_key, str, None)
    variable = section.get(env_key, str, None)
    if (file_name is None) == (variable is None):
        raise ConfigError(path, f"set exactly one of {file_key} and {env_key}",
                          "keep secrets out of orthanc.json")
    if file_name is not None:
        full = resolve(file_name, base_dir)
        try:
            with open(full, "rb") as handle:
                secret = handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"{path}.{file_key}", f"cannot read {full}: {exc.strerror}") from None
        where = f"{path}.{file_key}"
    else:
        secret = environ.get(variable, "").encode()
        where = f"{path}.{env_key}"
        if not secret:
            raise ConfigError(where, f"the environment variable {variable} is not set or empty")
    if len(secret) < minimum:
        raise ConfigError(where, f"the secret is shorter than {minimum} bytes",
                          "generate one with: head -c 32 /dev/urandom | base64")
    return secret
