"""The catalog's trading rule, pure: what one trade does to one stock.

Shared by the catalog's store and by the deterministic simulator, so both
settle trades the same way. A buy needs that much stock and takes it; a sell
adds. Either raises the stock's volume traded and its version.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from common.protocol import TradeStatus


@dataclass(frozen=True, slots=True)
class Stock:
    name: str
    price: float
    quantity: int
    volume: int
    version: int


def settle(stock: Stock | None, quantity: int, side: str) -> tuple[TradeStatus, Stock | None]:
    """Decide one trade.

    :param stock: the stock as it stands, or None if there is no such stock.
    :param quantity: a positive number of shares.
    :param side: ``"buy"`` or ``"sell"``.
    :returns: the status and, when it is ``ok``, the stock after the trade.
    """
    if stock is None:
        return TradeStatus.STOCK_NOT_FOUND, None
    if side == "buy":
        if quantity > stock.quantity:
            return TradeStatus.NOT_ENOUGH_STOCK, None
        new_quantity = stock.quantity - quantity
    else:
        new_quantity = stock.quantity + quantity
    return TradeStatus.OK, replace(
        stock, quantity=new_quantity, volume=stock.volume + quantity, version=stock.version + 1,
    )
