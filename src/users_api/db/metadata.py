"""All tables in one MetaData, for Alembic and for tests that compare schemas."""

from users_api.accounts import models as accounts_models
from users_api.auth import models as auth_models
from users_api.db.base import Base
from users_api.events import models as events_models
from users_api.mfa import models as mfa_models
from users_api.outbox import models as outbox_models
from users_api.throttle import models as throttle_models
from users_api.users import models as users_models
from users_api.webhooks import models as webhooks_models

metadata = Base.metadata

__all__ = [
    "accounts_models",
    "auth_models",
    "events_models",
    "metadata",
    "mfa_models",
    "outbox_models",
    "throttle_models",
    "users_models",
    "webhooks_models",
]
