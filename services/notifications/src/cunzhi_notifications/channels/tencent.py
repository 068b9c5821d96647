"""Tencent Cloud SMS (腾讯云短信, API 3.0, version 2021-01-11), signed TC3-HMAC-SHA256.

``SendSms`` takes up to 200 numbers with one template and one parameter list, so a request
holds the messages whose template and parameters are equal (a county-wide notice: one
request per 200 people); ``SessionContext`` = the first message's delivery id. The answer has
one status per number (``SendStatusSet``: ``Code`` "Ok" or an error code, ``SerialNo``).
Template parameters are positional in Tencent templates ({1}, {2}…): a message's
``template_params`` are taken by their keys "1", "2"… when they are numbers, else in the
order given (the template's order).

Receipts come from ``PullSmsSendStatusByPhoneNumber`` (per number, does not consume the
receipts as ``PullSmsSendStatus`` does). A status report exists only once the carrier
answered, so no record yet proves nothing: ``receipt`` then says it cannot tell (None).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import urllib.parse
from collections.abc import Hashable, Mapping
from typing import Any

from .base import Message, Outcome, SendResult
from .http import TRANSPORT_ERRORS, garbage, json_object
from .sms import UNTIL_MIDNIGHT, Rule, SmsChannel, judge

ENDPOINT = "https://sms.tencentcloudapi.com"
VERSION = "2021-01-11"
SERVICE = "sms"
CONTENT_TYPE = "application/json; charset=utf-8"

_R, _F = Outcome.RETRY, Outcome.FAILED
CODES: dict[str, Rule] = {
    "LimitExceeded.PhoneNumberThirtySecondLimit": Rule(_R, "one SMS per 30 s to a number", 30),
    "LimitExceeded.PhoneNumberOneHourLimit": Rule(_R, "the number's hourly limit", 3600),
    "LimitExceeded.PhoneNumberDailyLimit": Rule(_R, "the number's daily limit", UNTIL_MIDNIGHT),
    "LimitExceeded.PhoneNumberSameContentDailyLimit": Rule(
        _R, "same text to this number too often today", UNTIL_MIDNIGHT
    ),
    "LimitExceeded.AppDailyLimit": Rule(_R, "the application's daily limit", UNTIL_MIDNIGHT),
    "LimitExceeded.DailyLimit": Rule(_R, "the account's daily limit", UNTIL_MIDNIGHT),
    "LimitExceeded.DeliveryFrequencyLimit": Rule(_R, "the frequency policy (频率限制)", 60),
    "FailedOperation.InsufficientBalanceInSmsPackage": Rule(_R, "the SMS package is used up"),
    "FailedOperation.MarketingSendTimeConstraint": Rule(_R, "marketing SMS outside 8:00–22:00"),
    "InternalError.Timeout": Rule(
        Outcome.UNCLEAR, "the provider timed out handing it on: check the receipt"
    ),
}
PREFIXES = [
    ("LimitExceeded", Rule(_R, "a sending limit", 60)),
    ("RequestLimitExceeded", Rule(_R, "too many requests", 1)),
    ("InternalError", Rule(_R, "the provider's own fault")),
    ("AuthFailure", Rule(_R, "the request's key or signature was refused: check the settings")),
    ("UnauthorizedOperation", Rule(_R, "the account may not do this: see the console")),
    ("FailedOperation.PhoneNumber", Rule(_F, "the number cannot take it (blacklist, unknown)")),
    ("FailedOperation", Rule(_F, "refused (template, signature or content)")),
    ("InvalidParameterValue.IncorrectPhoneNumber", Rule(_F, "not a valid mobile number")),
    ("InvalidParameter", Rule(_F, "a parameter is malformed (template parameters, length)")),
    ("MissingParameter", Rule(_F, "a parameter is missing")),
    ("UnsupportedOperation", Rule(_F, "not supported for this number")),
]


def e164(phone: str) -> str:
    """Mainland numbers as the API returns them (+86…); anything else as given."""
    digits = phone.strip()
    if digits.startswith("+"):
        return digits
    if digits.startswith("0086"):
        return "+" + digits[2:]
    if digits.startswith("86") and len(digits) == 13:
        return "+" + digits
    return "+86" + digits


def authorization(
    *,
    secret_id: str,
    secret_key: str,
    host: str,
    payload: str,
    timestamp: int,
    service: str = SERVICE,
    content_type: str = CONTENT_TYPE,
) -> str:
    """The ``Authorization`` header of a POST with a JSON body (TC3-HMAC-SHA256)."""
    date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    canonical_request = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:{content_type}\nhost:{host}\n",
            "content-type;host",
            hashlib.sha256(payload.encode()).hexdigest(),
        ]
    )
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join(
        [
            "TC3-HMAC-SHA256",
            str(timestamp),
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )

    def mac(key: bytes, text: str) -> bytes:
        return hmac.new(key, text.encode(), hashlib.sha256).digest()

    signing_key = mac(mac(mac(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    sig = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, "
        f"SignedHeaders=content-type;host, Signature={sig}"
    )


class TencentSms(SmsChannel):
    provider = "Tencent Cloud SMS"
    max_batch = 200
    per_request = 200

    def __init__(
        self,
        *,
        secret_id: str,
        secret_key: str,
        sdk_app_id: str,
        endpoint: str = ENDPOINT,
        region: str = "ap-guangzhou",
        **options: Any,
    ) -> None:
        """``options``: ``sign_name``, ``timeout_s``, ``clock``, ``transport`` (SmsChannel)."""
        super().__init__(endpoint=endpoint, **options)
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._app_id = sdk_app_id
        self._region = region
        self._host = urllib.parse.urlsplit(self.endpoint).netloc

    def batch_key(self, message: Message) -> Hashable:
        return (message.template_code, tuple(_positional(message.template_params)))

    async def _call(self, action: str, body: Mapping[str, Any]) -> tuple[int, bytes]:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        timestamp = int(self.now().timestamp())
        headers = {
            "Authorization": authorization(
                secret_id=self._secret_id,
                secret_key=self._secret_key,
                host=self._host,
                payload=payload,
                timestamp=timestamp,
            ),
            "Content-Type": CONTENT_TYPE,
            "Host": self._host,
            "X-TC-Action": action,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Version": VERSION,
            "X-TC-Region": self._region,
        }
        response = await self.client.post(
            f"{self.endpoint}/", content=payload.encode(), headers=headers
        )
        return response.status_code, response.content

    async def send_batch(self, batch: list[Message], context: str) -> list[SendResult]:
        first = batch[0]
        status, body = await self._call(
            "SendSms",
            {
                "PhoneNumberSet": [e164(m.address) for m in batch],
                "SmsSdkAppId": self._app_id,
                "TemplateId": first.template_code,
                "SignName": self.sign_name,
                "TemplateParamSet": _positional(first.template_params),
                "SessionContext": context,
            },
        )
        answer = json_object(body)
        response = answer.get("Response") if answer else None
        if not isinstance(response, dict):
            result = garbage(status, body, self.provider)
            if result.outcome is Outcome.UNCLEAR:
                return self.unclear(batch, context, result.error or "")
            return [result] * len(batch)
        error = response.get("Error")
        if isinstance(error, dict):
            refusal = self._judge(str(error.get("Code")), str(error.get("Message", "")))
            if refusal.outcome is Outcome.UNCLEAR:
                return self.unclear(batch, context, refusal.error or "")
            return [refusal] * len(batch)
        listed = response.get("SendStatusSet")
        statuses = {
            s.get("PhoneNumber"): s
            for s in (listed if isinstance(listed, list) else [])
            if isinstance(s, dict)
        }
        results = []
        for message in batch:
            one = statuses.get(e164(message.address))
            if one is None:
                results.append(
                    self.unclear(
                        [message], context, f"{self.provider} answered without this number"
                    )[0]
                )
            elif one.get("Code") == "Ok":
                results.append(SendResult(Outcome.SENT, provider_id=one.get("SerialNo")))
            else:
                refusal = self._judge(str(one.get("Code")), str(one.get("Message", "")))
                if refusal.outcome is Outcome.UNCLEAR:
                    refusal = self.unclear([message], context, refusal.error or "")[0]
                results.append(refusal)
        return results

    def _judge(self, code: str, message: str) -> SendResult:
        return judge(self.provider, code, message, CODES, PREFIXES, self.now())

    async def receipt(self, message: Message, provider_id: str | None) -> SendResult | None:
        context = self.context_of(message, provider_id)
        serial = self.own_id(provider_id)
        now = int(self.now().timestamp())
        try:
            _, body = await self._call(
                "PullSmsSendStatusByPhoneNumber",
                {
                    "BeginTime": now - 7 * 24 * 3600,  # as far back as the provider keeps
                    "EndTime": now,
                    "Offset": 0,
                    "Limit": 100,
                    "PhoneNumber": e164(message.address),
                    "SmsSdkAppId": self._app_id,
                },
            )
        except TRANSPORT_ERRORS:
            return None
        answer = json_object(body)
        response = answer.get("Response") if answer else None
        records = response.get("PullSmsSendStatusSet") if isinstance(response, dict) else None
        for record in records if isinstance(records, list) else []:
            if not isinstance(record, dict):
                continue
            if (serial and record.get("SerialNo") == serial) or (
                not serial and record.get("SessionContext") == context
            ):
                if record.get("ReportStatus") == "SUCCESS":
                    return SendResult(
                        Outcome.SENT, provider_id=record.get("SerialNo"), delivered=True
                    )
                return SendResult(
                    Outcome.FAILED,
                    provider_id=record.get("SerialNo"),
                    error=f"{self.provider} receipt: not delivered ({record.get('Description')})",
                )
        return None


def _positional(params: Mapping[str, str]) -> list[str]:
    """Keys "1", "2"… in their numeric order; named keys in the order given."""
    if all(k.isdigit() for k in params):
        return [params[k] for k in sorted(params, key=int)]
    return list(params.values())
