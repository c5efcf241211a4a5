"""A user's GPU credit, the JSON twin of `nsml credit`.

NSML's hackathon deployments gave each user or team a GPU-time credit. This server does not
limit GPU time yet, so credits are off; the fair-share scheduler fills this answer in.
"""

from fastapi import APIRouter, Depends

from ..auth import current_user
from ..schemas import Credit

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/credit", response_model=Credit)
def credit(user: str = Depends(current_user)) -> Credit:
    return Credit(user=user, enabled=False, credit=None, message="this server does not limit GPU time")
