"""fix_images: the command that took production down, and its fix (--fixed).

Iterating a QuerySet caches every row it yields (QuerySet._result_cache). Each row here gains a
250 KB buffer (the image file read to fix it), so every row stays alive with its buffer until the
loop ends: memory grows with the table. --fixed iterates with .iterator(), which streams rows
without caching them.
"""
from django.core.management.base import BaseCommand

from shop.images.models import Image

ROW_BUFFER = 250 * 1024


class Command(BaseCommand):
    help = "Fix every image (add --fixed for the version that does not keep every row)."

    def add_arguments(self, parser):
        parser.add_argument("--fixed", action="store_true", help="iterate with .iterator()")

    def handle(self, *args, fixed=False, **options):
        images = Image.objects.filter(fixed=False)
        rows = images.iterator(chunk_size=100) if fixed else images
        done = 0
        for image in rows:
            image.buffer = bytearray(ROW_BUFFER)  # the file, read to be fixed
            image.buffer[::4096] = b"\x01" * len(image.buffer[::4096])
            image.fixed = True
            done += 1
            if done % 200 == 0:
                self.stdout.write(f"fixed {done} images")
        self.stdout.write(f"done: {done} images")
