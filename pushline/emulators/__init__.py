"""Stand-ins for the services Pushline talks to, for the development stack and the tests."""

from pushline.emulators._avro_compat import InvalidSchemaError, compatibility_errors
from pushline.emulators.registry import RegistryServer, create_registry_app

__all__ = ["InvalidSchemaError", "RegistryServer", "compatibility_errors", "create_registry_app"]
