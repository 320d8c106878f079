"""``oee``: the engine from a terminal. Reads ``OEE_URL`` and ``OEE_API_KEY``.

Exit codes a script can use: 0 the order confirmed (or the command succeeded), 1 it failed, was
cancelled or expired (or the engine is degraded), 2 a usage error, a refused request or no connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from clients.aio import AsyncClient
from clients.errors import ApiError, ConnectionFailed
from clients.models import ActiveOrder, RoutingDecision, StatusUpdate

T = TypeVar("T")

OK, NOT_FILLED, USAGE = 0, 1, 2

app = typer.Typer(name="oee", help="Submit, follow and manage orders of an order execution engine.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (admin).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

console = Console()
errors = Console(stderr=True)

Url = Annotated[str, typer.Option(envvar="OEE_URL", help="The engine's base URL")]
ApiKey = Annotated[str | None, typer.Option(envvar="OEE_API_KEY", help="An API key (Bearer)")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (one object per line for streams)")]
DEFAULT_URL = "http://127.0.0.1:8000"


def run(call: Callable[[AsyncClient], Awaitable[T]], url: str, api_key: str | None) -> T:
    """Run ``call`` with a client; turn refusals and lost connections into exit code 2."""

    async def main() -> T:
        async with AsyncClient(url, api_key) as client:
            return await call(client)

    try:
        return asyncio.run(main())
    except ApiError as exc:
        errors.print(f"[red]{exc}[/red]")
        for detail in exc.details:
            errors.print(f"  {'.'.join(str(p) for p in detail.get('path', []))}: {detail.get('message')} ({detail.get('code')})")
        raise typer.Exit(USAGE) from exc
    except ConnectionFailed as exc:
        errors.print(f"[red]cannot reach the engine at {url}: {exc}[/red]")
        raise typer.Exit(USAGE) from exc


def clock(epoch_ms: float | None) -> str:
    if epoch_ms is None:
        return ""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%H:%M:%S.%f")[:-3]


def outcome(status: str) -> int:
    return OK if status == "confirmed" else NOT_FILLED


# --------------------------------------------------------------------------- rendering


def route_table(decision: RoutingDecision) -> Table:
    """Every venue's quote, which won and why."""
    table = Table(title=f"route: {decision.selection_reason}", title_justify="left", expand=False)
    for column in ("dex", "net price", "amount out", "fee", "impact %", ""):
        table.add_column(column, justify="right" if column not in ("dex", "") else "left")
    chosen = {leg.dex for leg in decision.legs} or {decision.selected_dex}
    for dex, quote in sorted(decision.quotes.items()):
        mark = "selected" if dex in chosen else ""
        table.add_row(
            dex, f"{quote.net_price:,.6g}", f"{quote.amount_out:,.6g}", f"{quote.fee:,.6g}", f"{quote.price_impact_pct or 0:.3f}", mark
        )
    for dex, why in sorted(decision.rejected.items()):
        table.add_row(dex, "", "", "", "", f"[yellow]rejected: {why}[/yellow]")
    if len(decision.legs) > 1:
        legs = ", ".join(f"{leg.percent:.1f}% {leg.dex} ({leg.amount_in:,.6g} in)" for leg in decision.legs)
        table.caption = f"split: {legs}"
    return table


def fill_line(order: ActiveOrder | None, last: StatusUpdate) -> Text | None:
    """The fill against the quote it was routed on."""
    decision = last.data.routing_decision or (order.routing_decision if order else None)
    amount = last.data.execution_amount
    if decision is None or amount is None or not decision.amount_out:
        return None
    versus = (amount / decision.amount_out - 1) * 100
    floor = f", minimum {decision.min_amount_out:,.6g}" if decision.min_amount_out else ""
    return Text(f"fill: {amount:,.6g} at {last.data.execution_price:,.6g} vs quoted {decision.amount_out:,.6g} ({versus:+.3f}%){floor}")


def follow_view(order: ActiveOrder | None, updates: list[StatusUpdate]) -> Group:
    timeline = Table(title="events", title_justify="left")
    for column in ("seq", "status", "time", "+ms", "message"):
        timeline.add_column(column)
    previous: float | None = None
    decision: RoutingDecision | None = order.routing_decision if order else None
    for update in updates:
        gap = "" if previous is None else f"{update.timestamp - previous:,.0f}"
        previous = update.timestamp
        style = {"confirmed": "green", "failed": "red", "cancelled": "yellow", "expired": "yellow"}.get(update.status, "")
        timeline.add_row(str(update.seq), Text(update.status, style=style), clock(update.timestamp), gap, update.message)
        decision = update.data.routing_decision or decision
    parts: list[Any] = []
    if order is not None:
        parts.append(
            Text(f"{order.order_id}: {order.amount:,.6g} {order.token_in} -> {order.token_out} ({order.order_type})", style="bold")
        )
    parts.append(timeline)
    if decision is not None:
        parts.append(route_table(decision))
    if updates and (fill := fill_line(order, updates[-1])) is not None:
        parts.append(fill)
    if updates and updates[-1].data.tx_hash:
        parts.append(Text(f"tx: {updates[-1].data.tx_hash}"))
    return Group(*parts)


async def follow_order(client: AsyncClient, order_id: str, as_json: bool) -> str:
    """Follow to the end, live; return the terminal status."""
    order: ActiveOrder | None = await client.get(order_id)
    updates: list[StatusUpdate] = []
    if as_json or not console.is_terminal:
        async for update in client.follow(order_id):
            updates.append(update)
            print(json.dumps(update.model_dump(by_alias=True, exclude_none=True)), flush=True)
        return updates[-1].status if updates else "unknown"
    with Live(follow_view(order, updates), console=console, refresh_per_second=8) as live:
        async for update in client.follow(order_id):
            updates.append(update)
            live.update(follow_view(order, updates))
    return updates[-1].status if updates else "unknown"


# --------------------------------------------------------------------------- commands


@app.command()
def submit(
    token_in: Annotated[str, typer.Argument(help="Symbol (SOL, USDC...) or mint")],
    token_out: Annotated[str, typer.Argument(help="Symbol or mint")],
    amount: Annotated[float, typer.Argument(help="Amount of tokenIn")],
    order_type: Annotated[str, typer.Option("--type", help="MARKET, LIMIT or SNIPER")] = "MARKET",
    slippage_bps: Annotated[int | None, typer.Option(help="Tolerated slippage, basis points")] = None,
    limit_price: Annotated[float | None, typer.Option(help="LIMIT: minimum tokenOut per tokenIn")] = None,
    max_price: Annotated[float | None, typer.Option(help="SNIPER: maximum tokenIn per tokenOut")] = None,
    expires_in: Annotated[float | None, typer.Option(help="Seconds until the order expires")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Idempotency-Key header")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Follow the order to its end")] = False,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Submit an order (202 means it is stored); with --follow, watch it to its end."""
    expires_at = int((time.time() + expires_in) * 1000) if expires_in else None

    async def call(client: AsyncClient) -> int:
        accepted = await client.submit(
            token_in.upper(),
            token_out.upper(),
            amount,
            order_type.upper(),
            slippage_bps=slippage_bps,
            limit_price=limit_price,
            max_price=max_price,
            expires_at=expires_at,
            idempotency_key=idempotency_key,
        )
        if as_json:
            print(json.dumps(accepted.model_dump(by_alias=True)), flush=True)
        else:
            console.print(f"accepted [bold]{accepted.order_id}[/bold]")
        if not follow:
            return OK
        return outcome(await follow_order(client, accepted.order_id, as_json))

    raise typer.Exit(run(call, url, api_key))


@app.command("follow")
def follow_command(order_id: str, as_json: AsJson = False, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """Watch an order live: its statuses with their times, the route with every venue's quote, the fill."""
    raise typer.Exit(run(lambda client: _followed(client, order_id, as_json), url, api_key))


async def _followed(client: AsyncClient, order_id: str, as_json: bool) -> int:
    return outcome(await follow_order(client, order_id, as_json))


@app.command()
def show(order_id: str, as_json: AsJson = False, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """An order's current state."""
    order = run(lambda client: client.get(order_id), url, api_key)
    if as_json:
        print(json.dumps(order.model_dump(by_alias=True, exclude_none=True)))
    else:
        console.print(follow_view(order, []))
        console.print(f"status: [bold]{order.status}[/bold]" + (f" ({order.failure_reason})" if order.failure_reason else ""))


@app.command()
def orders(
    status: Annotated[str | None, typer.Option(help="Only this status")] = None,
    order_type: Annotated[str | None, typer.Option("--type", help="Only this order type")] = None,
    token_in: Annotated[str | None, typer.Option(help="Only this tokenIn")] = None,
    token_out: Annotated[str | None, typer.Option(help="Only this tokenOut")] = None,
    account: Annotated[str | None, typer.Option(help="Admin: only this account")] = None,
    limit: Annotated[int, typer.Option(help="How many (newest first)")] = 20,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """List orders, newest first."""
    page = run(
        lambda client: client.list_orders(
            status=status, order_type=order_type, token_in=token_in, token_out=token_out, account=account, limit=limit
        ),
        url,
        api_key,
    )
    if as_json:
        for order in page.orders:
            print(json.dumps(order.model_dump(by_alias=True, exclude_none=True)))
        return
    table = Table()
    for column in ("order", "submitted", "type", "pair", "amount", "status", "dex", "price"):
        table.add_column(column)
    for order in page.orders:
        price = f"{order.execution_price:,.6g}" if order.execution_price else ""
        table.add_row(
            order.order_id,
            clock(order.submitted_at),
            order.order_type,
            f"{order.token_in}/{order.token_out}",
            f"{order.amount:,.6g}",
            order.status,
            order.exchange_id or "",
            price,
        )
    console.print(table)


@app.command()
def cancel(order_id: str, as_json: AsJson = False, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """Cancel an order that has not been submitted to a venue yet."""
    answer = run(lambda client: client.cancel(order_id), url, api_key)
    if as_json:
        print(json.dumps(answer))
    else:
        console.print(f"{order_id}: {answer.get('status')}")


@app.command()
def health(as_json: AsJson = False, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """The engine's health (exit 0 ok, 1 degraded, 2 unreachable)."""
    report = run(lambda client: client.health(), url, api_key)
    if as_json:
        print(json.dumps(report))
    else:
        checks = ", ".join(f"{name} {state}" for name, state in (report.get("checks") or {}).items())
        console.print(f"{report.get('status')}: {checks}")
    raise typer.Exit(OK if report.get("status") == "ok" else NOT_FILLED)


@app.command()
def events(
    since: Annotated[int | None, typer.Option(help="Resume after this eventId (default: new events only)")] = None,
    status: Annotated[list[str] | None, typer.Option(help="Only these statuses")] = None,
    order_type: Annotated[list[str] | None, typer.Option("--type", help="Only these order types")] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many events")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Tail the account-wide event stream (JSON lines; resumes on its own after a broken connection)."""

    async def call(client: AsyncClient) -> int:
        seen = 0
        async for event in client.stream(since, statuses=status, order_types=order_type):
            print(json.dumps(event.model_dump(by_alias=True, exclude_none=True)), flush=True)
            seen += 1
            if count is not None and seen >= count:
                break
        return OK

    raise typer.Exit(run(call, url, api_key))


@app.command()
def halt(
    reason: Annotated[str, typer.Option(help="Why (recorded with who and when)")],
    pair: Annotated[str | None, typer.Option(help="Only this pair, e.g. SOL/USDC")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Admin: stop trading (everything, or one pair). Swaps already submitted finish."""
    console.print(run(lambda client: client.set_trading_state("halted", reason, pair), url, api_key))


@app.command()
def resume(
    reason: Annotated[str, typer.Option(help="Why (recorded with who and when)")] = "resumed",
    pair: Annotated[str | None, typer.Option(help="Only this pair, e.g. SOL/USDC")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Admin: trade again."""
    console.print(run(lambda client: client.set_trading_state("active", reason, pair), url, api_key))


@app.command("trading-state")
def trading_state(url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """Admin: the kill switch's state and its history."""
    console.print_json(json.dumps(run(lambda client: client.trading_state(), url, api_key)))


@app.command()
def tx(signature: str, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """A landed transaction as the chain has it (slot, signers, balance changes, the memo)."""
    console.print_json(json.dumps(run(lambda client: client.transaction(signature), url, api_key)))


@app.command()
def landed(order_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """What landed on the chain for an order: its transactions, found by the memo (at most one succeeded)."""
    console.print_json(json.dumps(run(lambda client: client.order_transactions(order_id), url, api_key)))


@app.command()
def wallet(url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """Your trading wallet's balances, from the chain."""
    console.print_json(json.dumps(run(lambda client: client.wallet(), url, api_key)))


@keys_app.command("create")
def keys_create(
    account: Annotated[str, typer.Option(help="The account the key trades for")],
    scope: Annotated[list[str], typer.Option(help="read, trade or admin (repeat for several)")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Create a key (shown once: keep it)."""
    created = run(lambda client: client.create_key(account, scope), url, api_key)
    console.print_json(json.dumps(created))


@keys_app.command("list")
def keys_list(url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """Every key, without secrets."""
    console.print_json(json.dumps(run(lambda client: client.list_keys(), url, api_key)))


@keys_app.command("revoke")
def keys_revoke(key_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """Revoke a key at once, cluster-wide."""
    run(lambda client: client.revoke_key(key_id), url, api_key)
    console.print(f"revoked {key_id}")


def main() -> None:
    app(prog_name="oee")


if __name__ == "__main__":
    main()
