from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Image",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False)),
                ("path", models.CharField(max_length=200)),
                ("fixed", models.BooleanField(default=False)),
            ],
        ),
    ]
