"""Files shipped with the package: the programs/ and manifests/ folders of the repository.

In a wheel they are kubectl_pytrace/programs and kubectl_pytrace/manifests (pyproject.toml maps
them there); in a source checkout (an editable install) they are beside the package.
"""

from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def resource_dir(name: str) -> str:
    """The directory of `name` ("programs" or "manifests")."""
    for d in (os.path.join(_HERE, name), os.path.join(os.path.dirname(_HERE), name)):
        if os.path.isdir(d):
            return d
    raise FileNotFoundError(f"kubectl-pytrace is installed without its {name}/ folder")
