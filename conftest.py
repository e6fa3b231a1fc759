# Thin on purpose: everything lives in the plugin, which imports nothing from tests/.
pytest_plugins = ["fakequant.pytest_plugin"]
