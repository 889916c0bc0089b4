"""The ``osteolens`` command: thin wrappers that delegate to the packages."""
