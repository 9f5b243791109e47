"""The pytest plugin of deployai, by a name to list in `pytest_plugins` where plugin autoloading is off.

Installing deployai registers it (as `deployai`: `-p no:deployai` turns it off). It is defined
outside the package, in `_deployai_pytest_plugin`, so that pytest runs that do not use it import
nothing of deployai; its fixtures are listed there.

```python
# conftest.py, with PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
pytest_plugins = ["anyio.pytest_plugin", "deployai.testing.pytest_plugin"]  # anyio's: the async fixtures
```
"""

from _deployai_pytest_plugin import *  # noqa: F403 (the fixtures and hook are the module's whole content)
from _deployai_pytest_plugin import __all__ as __all__
