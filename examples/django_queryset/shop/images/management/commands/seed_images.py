from django.core.management.base import BaseCommand

from shop.images.models import Image


class Command(BaseCommand):
    help = "Create N image rows (default 2000)."

    def add_arguments(self, parser):
        parser.add_argument("rows", nargs="?", type=int, default=2000)

    def handle(self, *args, rows, **options):
        Image.objects.all().delete()
        Image.objects.bulk_create(Image(path=f"/srv/media/{n}.jpg") for n in range(rows))
        self.stdout.write(f"{rows} images")
