pytest_plugins = ["cunzhi_platform.testing"]
