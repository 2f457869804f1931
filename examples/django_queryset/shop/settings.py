"""Settings of the example shop: one app, SQLite (SHOP_DB names the file)."""
import os

SECRET_KEY = "example-only-not-a-secret"
DEBUG = False
INSTALLED_APPS = ["shop.images"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", os.path.join(os.path.dirname(__file__), "..", "shop.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
