"""OcppTransaction: the transaction ids we hand to OCPP stations, and what they reported with them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chargeshed.extensions import db
from chargeshed.timeutil import now as clock_now


class OcppTransaction(db.Model):
    """One StartTransaction a station sent; `id` is the transactionId we answered with.

    The same StartTransaction sent again (after a reconnect, from the station's offline queue)
    matches on station, connector, idTag and the station's timestamp, and gets the same id.
    `session_ref` is set when the idTag was ours (an accepted start); meter values in Wh.
    """

    __tablename__ = "ocpp_transaction"
    __table_args__ = (
        UniqueConstraint("charge_point_id", "connector", "id_tag", "started_at", name="uq_ocpp_transaction_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    charge_point_id: Mapped[str] = mapped_column(String(48), index=True)
    connector: Mapped[int]
    id_tag: Mapped[str] = mapped_column(String(20))
    session_ref: Mapped[str | None] = mapped_column(String(32))
    meter_start_wh: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime]
    meter_stop_wh: Mapped[int | None] = mapped_column(BigInteger)
    stopped_at: Mapped[datetime | None]
    stop_reason: Mapped[str | None] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(default=clock_now)
