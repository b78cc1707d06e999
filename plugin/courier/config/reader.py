"""Reading JSON sections with declared keys; every problem is a ConfigError naming its path."""
from __future__ import annotations

import difflib
import os
from typing import Any

from courier.errors import ConfigError

# Every key Courier reads, by section. "{id}" stands for a user-chosen name, "[]" for a list item.
KEYS: dict[str, tuple[str, ...]] = {
    "Courier": ("DatabasePath", "Database", "Workers", "MaxWorkersPerDestination", "BatchSize", "BatchLingerSeconds",
                "HeartbeatTimeoutSeconds", "AllowedCallers", "RouterName", "ScriptsDirectory", "OrthancUrl",
                "QuarantineDirectory", "Retry",
                "Folders", "Archives", "Buckets", "Nodes", "Pseudonymization", "Routes", "Users", "DefaultRole", "AnonymousRole",
                "Imports", "EchoIntervalSeconds", "RetentionDays", "AcceptedSopClasses"),
    "Courier.Database": ("Url", "PasswordFile", "PasswordEnv", "PoolSize"),
    # a DICOMweb server or Orthanc peer added at runtime names its password (config.runtime)
    "{registry}.{id}": ("PasswordFile", "PasswordEnv"),
    "Courier.Users.{name}": ("Role", "MayQuery", "MaySendTo"),
    "Courier.Archives.{id}": ("Path", "Layout", "PasswordFile", "PasswordEnv", "Enabled", "Convert"),
    "Courier.Buckets.{id}": ("Endpoint", "Region", "Bucket", "Prefix", "Layout", "AccessKeyFile", "AccessKeyEnv",
                             "SecretKeyFile", "SecretKeyEnv", "MultipartThresholdMB", "Enabled", "Convert"),
    "Courier.Nodes.{id}": ("Enabled", "Capabilities", "QueryModel", "RetrieveMethod", "MaxResults", "MaxParallelTasks",
                           "Windows", "DirectMoveTo", "ConnectTimeoutSeconds", "RetrieveTimeoutSeconds",
                           "OfflineRetrieveTimeoutSeconds", "Authorization"),
    "Courier.Nodes.{id}.Authorization": ("BearerTokenFile", "BearerTokenEnv", "TokenUrl", "ClientId", "ClientSecretFile",
                                         "ClientSecretEnv", "Scope", "RefreshBeforeSeconds"),
    "Courier.Retry": ("MaxAttempts", "InitialDelaySeconds", "Multiplier", "MaxDelaySeconds"),
    "Courier.Folders.{id}": ("Path", "Layout", "Enabled", "Convert"),
    "Courier.Imports.{id}": ("Path", "Recursive", "Pattern", "After", "MoveTo", "RejectedPath", "CompleteWhen",
                             "QuietSeconds", "Route", "Destinations", "Pseudonymize", "RescanSeconds"),
    "Courier.Routes[]": ("Name", "Enabled", "Trigger", "Match", "Condition", "Destinations", "DeleteAfterDelivery",
                         "Priority", "AllowedCallingAets", "Fallback", "Pseudonymize", "PseudonymizeOn",
                         "StableAfterSeconds", "ForceAfterSeconds", "CompleteWhen", "Modify"),
    "Courier.Routes[].CompleteWhen": ("SeriesDescriptions", "Modalities"),
    "Courier.Routes[].Modify": ("Copy", "Replace", "Set", "Remove", "Script"),
    "Courier.Routes[].Modify.Replace.{path}": ("Pattern", "With"),
    "Courier.Pseudonymization.{name}": ("Options", "SecretFile", "SecretEnv", "Pseudonym", "DateShiftDays", "Keep",
                                        "Remove", "Replace", "SafePrivate", "Trial", "BurnedInAnnotation",
                                        "BurnedInModalities", "BurnedInSopClasses"),
    "Courier.Pseudonymization.{name}.Pseudonym": ("Source", "Prefix", "Length", "Alphabet", "LookupFile", "BrokerUrl",
                                                  "BrokerTimeoutSeconds"),
    "Courier.Pseudonymization.{name}.Trial": ("SponsorName", "ProtocolID", "ProtocolName", "SiteID", "SiteName"),
}

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               dict: "an object", list: "a list"}


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    return {str: "a string", int: "an integer", float: "a number", dict: "an object",
            list: "a list", type(None): "null"}.get(type(value), type(value).__name__)


def is_kind(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


class Section:
    """Reads one JSON object, knows its declared keys, rejects the others."""

    _MISSING = object()

    def __init__(self, data: Any, path: str, schema: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected an object, got {type_name(data)}")
        self.data, self.path, self.keys = data, path, KEYS[schema]
        unknown = [k for k in data if k not in self.keys]
        if unknown:
            close = difflib.get_close_matches(unknown[0], self.keys, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(self.keys)}"
            raise ConfigError(f"{path}.{unknown[0]}", "unknown key", hint)

    def get(self, key: str, kind: type, default: Any = _MISSING) -> Any:
        assert key in self.keys, f"{key} is not declared in config.KEYS"
        if key not in self.data:
            if default is self._MISSING:
                raise ConfigError(f"{self.path}.{key}", "is required")
            return default
        value = self.data[key]
        if not is_kind(value, kind):
            raise ConfigError(f"{self.path}.{key}", f"expected {_TYPE_NAMES[kind]}, got {type_name(value)}")
        return value

    def positive(self, key: str, kind: type, default: Any) -> Any:
        value = self.get(key, kind, default)
        if value <= 0:
            raise ConfigError(f"{self.path}.{key}", f"must be greater than 0, got {value}")
        return value


def resolve(path: str, base_dir: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))
