"""Check that raw's token checks agree with users-api's: `python bench/token_parity.py`.

The raw reference (bench/reference/raw_app.py) verifies access tokens by hand, for speed;
the benchmark is only fair while it accepts and refuses what users-api's `AccessTokens`
does. This signs tokens of every kind that matters (good, expired, forged, the wrong
algorithm, audience, issuer, a claim missing or of the wrong type...) and asks both.
Run it again whenever `users_api.security.tokens` changes. Exit status 1 on a disagreement.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt

SECRET = "bench-secret-key-" + "x" * 32
os.environ.setdefault("SECRET_KEY", SECRET)
sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))

import raw_app  # noqa: E402  # needs SECRET_KEY and the path first

from users_api.security.tokens import AccessTokens, InvalidToken  # noqa: E402

TTL = 900


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "iat": now,
        "exp": now + TTL,
        "aud": "users-api",
        "iss": "users-api",
        "jti": uuid.uuid4().hex,
        "ver": 3,
        "sid": str(uuid.uuid4()),
    }
    for name, value in changes.items():
        if value is ...:
            base.pop(name)
        else:
            base[name] = value
    return base


def signed(
    payload: dict[str, Any],
    *,
    key: str = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    """Signed by hand: PyJWT's `encode` refuses some of the claims tried here."""
    header = {"alg": algorithm, "typ": "JWT", **(headers or {})}
    signing_input = f"{b64(json.dumps(header))}.{b64(json.dumps(payload))}"
    digest = {"HS256": "sha256", "HS512": "sha512"}.get(algorithm)
    if digest is None:  # "none"
        return f"{signing_input}."
    mac = hmac.digest(key.encode(), signing_input.encode(), digest)
    return f"{signing_input}.{b64(mac)}"


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def cases() -> dict[str, str]:
    now = int(time.time())
    good = signed(claims())
    head, body, sig = good.split(".")
    found = {
        "users-api's own": AccessTokens(SECRET.encode(), timedelta(seconds=TTL)).issue(
            uuid.uuid4(), 7, uuid.uuid4()
        ),
        "raw's own": raw_app.AccessTokens(SECRET.encode(), TTL).issue(
            str(uuid.uuid4()), 7, str(uuid.uuid4())
        ),
        "good": good,
        "aud as a list with users-api": signed(claims(aud=["other", "users-api"])),
        "exp as a numeric string": signed(claims(exp=str(now + TTL))),
        "exp a float": signed(claims(exp=now + TTL + 0.5)),
        "extra claims and a kid": signed(claims(scope="x"), headers={"kid": "k1"}),
        "expired": signed(claims(iat=now - 2 * TTL, exp=now - TTL)),
        "expires now": signed(claims(exp=now)),
        "iat in the future": signed(claims(iat=now + 60)),
        "nbf in the future": signed(claims(nbf=now + 60)),
        "another key": signed(claims(), key="another-secret-key-" + "y" * 32),
        "HS512 with the key": signed(claims(), algorithm="HS512"),
        "alg none": signed(claims(), algorithm="none"),
        "PyJWT's encode": jwt.encode(claims(), SECRET, algorithm="HS256"),
        "wrong audience": signed(claims(aud="other")),
        "aud list without users-api": signed(claims(aud=["a", "b"])),
        "aud empty list": signed(claims(aud=[])),
        "aud list with a number": signed(claims(aud=["users-api", 1])),
        "wrong issuer": signed(claims(iss="other")),
        "iss not a string": signed(claims(iss=["users-api"])),
        "ver a bool": signed(claims(ver=True)),
        "ver a string": signed(claims(ver="3")),
        "ver a float": signed(claims(ver=3.0)),
        "ver null": signed(claims(ver=None)),
        "sub a uuid in capitals": signed(claims(sub=str(uuid.uuid4()).upper())),
        "sub not a uuid": signed(claims(sub="admin")),
        "sub a number": signed(claims(sub=12345)),
        "sid not a uuid": signed(claims(sid="session")),
        "sid a number": signed(claims(sid=int(uuid.uuid4().hex[:30], 16))),
        "sid digits only": signed(claims(sid="1" * 32)),
        "sid in capitals": signed(claims(sid=str(uuid.uuid4()).upper())),
        "jti a number": signed(claims(jti=1)),
        "iat a string": signed(claims(iat="yesterday")),
        "kid a number": signed(claims(), headers={"kid": 1}),
        "payload swapped": f"{head}.{signed(claims(ver=99)).split('.')[1]}.{sig}",
        "signature cut": f"{head}.{body}.{sig[:-2]}",
        "no signature": f"{head}.{body}.",
        "two segments": f"{head}.{body}",
        "empty": "",
        "dots": "..",
        "garbage": "not-a-token",
        "not base64": f"{head}.{body}.!!!!",
    }
    for name in raw_app.REQUIRED_CLAIMS:
        found[f"no {name}"] = signed(claims(**{name: ...}))
    return found


def verdict(check: Any, token: str) -> tuple[str, ...]:
    try:
        result = check(token)
    except (InvalidToken, raw_app.Unauthorized):
        return ("refused",)
    if isinstance(result, tuple):  # raw: (user id, auth_version)
        return ("accepted", str(result[0]), str(result[1]))
    return ("accepted", str(result.user_id), str(result.auth_version))


def main() -> int:
    service = AccessTokens(SECRET.encode(), timedelta(seconds=TTL))
    raw = raw_app.AccessTokens(SECRET.encode(), TTL)
    disagreements = 0
    for name, token in cases().items():
        ours, theirs = verdict(service.verify, token), verdict(raw.verify, token)
        mark = "ok " if ours == theirs else "DIFFERENT"
        disagreements += ours != theirs
        print(f"{mark:<9} {name:<32} users-api {ours[0]:<8} raw {theirs[0]}")
    # a token both have checked and cached, then expired: only the expiry is checked again
    short = signed(claims(exp=int(time.time()) + 2))
    before = verdict(service.verify, short), verdict(raw.verify, short)
    time.sleep(max(0.0, int(time.time()) + 2 - time.time()) + 0.05)
    after = verdict(service.verify, short), verdict(raw.verify, short)
    same = before[0] == before[1] and after[0] == after[1] == ("refused",)
    disagreements += not same
    print(
        f"{'ok ' if same else 'DIFFERENT':<9} {'cached, then expired':<32} users-api "
        f"{before[0][0]} then {after[0][0]}, raw {before[1][0]} then {after[1][0]}"
    )
    print(f"{disagreements} disagreement(s)")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
