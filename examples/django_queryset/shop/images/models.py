from django.db import models


class Image(models.Model):
    """A product image: where its file is, and whether it has been fixed."""

    path = models.CharField(max_length=200)
    fixed = models.BooleanField(default=False)
