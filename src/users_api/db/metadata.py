"""All tables in one MetaData, for Alembic and for tests that compare schemas."""

from users_api.accounts import models as accounts_models
from users_api.auth import models as auth_models
from users_api.cluster import models as cluster_models
from users_api.db.base import Base
from users_api.events import models as events_models
from users_api.groups import models as groups_models
from users_api.mfa import models as mfa_models
from users_api.outbox import models as outbox_models
from users_api.scim import models as scim_models
from users_api.throttle import models as throttle_models
from users_api.users import models as users_models
from users_api.webhooks import models as webhooks_models

metadata = Base.metadata

# Every unique index whose refusal is a 409 naming a field (`Database`'s `unique_fields`).
UNIQUE_FIELDS = {**users_models.UNIQUE_FIELDS, **groups_models.UNIQUE_FIELDS}

__all__ = [
    "UNIQUE_FIELDS",
    "accounts_models",
    "auth_models",
    "cluster_models",
    "events_models",
    "groups_models",
    "metadata",
    "mfa_models",
    "outbox_models",
    "scim_models",
    "throttle_models",
    "users_models",
    "webhooks_models",
]
