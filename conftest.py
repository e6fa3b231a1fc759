# Thin on purpose: everything lives in the plugin, which imports nothing from tests/.
pytest_plugins = ["fakequant.suite.plugin"]
