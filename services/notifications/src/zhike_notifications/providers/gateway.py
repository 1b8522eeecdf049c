"""The dispatcher's one door to every provider (the domain's `ProviderGateway` port): a message
goes to a named provider, and the provider's answer comes back as a value — accepted, or an
error of a kind the retry policy reads — never as an exception."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from zhike_notifications.domain.model import Channel
from zhike_notifications.domain.ports import Outgoing, ProviderAnswer
from zhike_notifications.domain.retry import ErrorKind
from zhike_notifications.providers.base import OutboundMessage, Provider, ProviderError

log = logging.getLogger(__name__)


class ProviderSet:
    """The configured providers, and each channel's failover order."""

    def __init__(
        self, providers: Sequence[Provider], order: Mapping[Channel, Sequence[str]]
    ) -> None:
        self._providers = {provider.name: provider for provider in providers}
        if len(self._providers) != len(providers):
            raise ValueError("provider names must be unique")
        self._order: dict[Channel, tuple[str, ...]] = {}
        for channel, names in order.items():
            for name in names:
                provider = self._providers.get(name)
                if provider is None:
                    raise ValueError(f"{channel.value}: no provider is configured as {name!r}")
                if provider.channel is not channel:
                    raise ValueError(
                        f"{channel.value}: provider {name!r} sends {provider.channel.value}"
                    )
            self._order[channel] = tuple(names)

    def providers(self, channel: Channel) -> tuple[str, ...]:
        return self._order.get(channel, ())

    async def send(self, provider: str, message: Outgoing) -> ProviderAnswer:
        adapter = self._providers.get(provider)
        if adapter is None:  # removed from the configuration while a send was planned
            return ProviderAnswer(provider, error=ErrorKind.TRANSIENT, code="provider_removed")
        outbound = OutboundMessage(
            out_id=message.out_id,
            channel=message.channel,
            to=message.to,
            body=message.body,
            subject=message.subject,
            unsubscribe_url=message.unsubscribe_url,
        )
        try:
            accepted = await adapter.send(outbound)
        except ProviderError as error:
            return ProviderAnswer(
                provider, error=error.kind, code=error.code, retry_after=error.retry_after
            )
        except Exception as error:  # noqa: BLE001 - an adapter's bug must not lose the message
            # It may have gone out: the same provider again, with the same out-id.
            log.error(
                "provider adapter failed unexpectedly",
                extra={"provider": provider, "error_class": type(error).__name__},
            )
            return ProviderAnswer(provider, error=ErrorKind.AMBIGUOUS, code="adapter_error")
        return ProviderAnswer(provider, provider_message_id=accepted.provider_message_id)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
