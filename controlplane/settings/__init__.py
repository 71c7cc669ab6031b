"""Settings, composed from one module per concern. Everything comes from the environment; the embedded
defaults need nothing installed (SQLite, in-process channel layer and tasks, mail kept in an outbox)."""

from .access import *  # noqa: F403
from .api import *  # noqa: F403
from .base import *  # noqa: F403
from .celery import *  # noqa: F403
from .certificates import *  # noqa: F403
from .channels import *  # noqa: F403
from .database import *  # noqa: F403
from .edge import *  # noqa: F403
from .email import *  # noqa: F403
from .env import DATA_DIR, MODE, PRODUCTION  # noqa: F401
from .otp import *  # noqa: F403
from .security import *  # noqa: F403
from .tunnels import *  # noqa: F403
from .zones import *  # noqa: F403
