"""Name registries of layers, losses and optimizers, so configs can refer to them by name.

A class registers with a decorator, e.g. ``@LAYERS.register("leaky_relu")``, and a
config then names it (``type = "leaky_relu"``) with its constructor options. This
module imports nothing from minilearn, so every other module may import it.
"""


class Registry:
    """A mapping from names to classes of one kind (``"layer"``, ``"loss"``, ...)."""

    def __init__(self, kind):
        self.kind = kind
        self._classes = {}

    def register(self, name):
        """Return a class decorator that registers the class under ``name``.

        Registering a different class under a taken name raises ValueError, so a
        plugin cannot silently replace a built-in. Re-registering the same class
        (e.g. when a module is imported twice) is allowed.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def decorator(cls):
            existing = self._classes.get(name)
            if existing is not None and _qualified(existing) != _qualified(cls):
                raise ValueError(f"{self.kind} name {name!r} is already registered to "
                                 f"{_qualified(existing)}; choose another name")
            self._classes[name] = cls
            cls.registered_name = name
            return cls

        return decorator

    def unregister(self, name):
        """Remove ``name`` and return its class, e.g. to undo a test's registration.

        Raises KeyError for a name that is not registered.
        """
        if name not in self._classes:
            raise KeyError(f"{self.kind} {name!r} is not registered")
        return self._classes.pop(name)

    def get(self, name):
        """Return the class registered under ``name``, or raise ValueError listing the names."""
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of "
                             f"{', '.join(self._classes)}") from None

    def names(self):
        """Return the registered names in registration order."""
        return list(self._classes)

    def __contains__(self, name):
        return name in self._classes

    def __iter__(self):
        return iter(self._classes)

    def __len__(self):
        return len(self._classes)

    def items(self):
        return self._classes.items()

    def __getitem__(self, name):
        return self.get(name)


def _qualified(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


LAYERS = Registry("layer")
LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
