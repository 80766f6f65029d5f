from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

USERNAME, PASSWORD = "demo", "dumont-demo"


class Command(BaseCommand):
    help = "Create (or reset) the local demo user, a superuser with a known password. DEBUG only."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("refusing to create a user with a known password while DEBUG is off")
        user, created = get_user_model().objects.get_or_create(username=USERNAME)
        user.is_staff = user.is_superuser = True
        user.set_password(PASSWORD)
        user.save()
        self.stdout.write(f"demo user {'created' if created else 'reset'}: {USERNAME} / {PASSWORD}")
