"""The layout of `app/`, one line per package, from each package's own
docstring: `python -m app.layout` prints the block docs/design.md holds
(tests/test_layout.py checks the copy)."""
import importlib
import os
import pkgutil

HERE = os.path.dirname(os.path.abspath(__file__))
# The layers in the order a request meets them; data flows down them only.
LAYERS = ("routes", "controllers", "middleware", "schemas", "services", "store")


def packages(path: str = HERE, prefix: str = "app.") -> list[str]:
    """Every package under `app/`, parents before their children."""
    found = [name for _, name, is_package in pkgutil.walk_packages([path], prefix)
             if is_package and ".migrations" not in name]

    def place(name: str) -> tuple[int, str]:
        layer = name.split(".")[1]
        return (LAYERS.index(layer) if layer in LAYERS else len(LAYERS), name)
    return sorted(found, key=place)


def summary(name: str) -> str:
    """A package's docstring's first paragraph, on one line."""
    doc = importlib.import_module(name).__doc__ or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def markdown() -> str:
    lines = []
    for name in packages():
        depth = name.count(".") - 1
        folder = name.split(".", 1)[1].replace(".", "/") + "/"
        lines.append("%s- `%s` — %s" % ("  " * depth, folder.rsplit("/", 2)[-2] + "/" if depth else folder,
                                        summary(name)))
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
