"""Alibaba Cloud SMS (阿里云短信服务, dysmsapi 2017-05-25), RPC style with signature v1.

One message alone goes by ``SendSms`` with ``OutId`` = our delivery id; several with one
template go by ``SendBatchSms`` (up to 100 numbers, a parameter set per number), ``OutId`` =
the first message's delivery id. Receipts come from ``QuerySendDetails`` (number + day, the
records carry ``OutId``): the provider lists a send as soon as it accepted it, so a number
with no record under our context was not sent.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import urllib.parse
import uuid
from collections.abc import Hashable, Mapping
from typing import Any

from cunzhi_platform.clock import SHANGHAI

from .base import Message, Outcome, SendResult
from .http import TRANSPORT_ERRORS, garbage, json_object
from .sms import UNTIL_MIDNIGHT, Rule, SmsChannel, judge

ENDPOINT = "https://dysmsapi.aliyuncs.com"
VERSION = "2017-05-25"

_R, _F = Outcome.RETRY, Outcome.FAILED
CODES: dict[str, Rule] = {
    "isv.BUSINESS_LIMIT_CONTROL": Rule(_R, "the number's per-minute/hour/day limit (业务限流)", 60),
    "isv.DAY_LIMIT_CONTROL": Rule(_R, "the account's daily limit", UNTIL_MIDNIGHT),
    "Throttling.User": Rule(_R, "too many requests from this account", 1),
    "Throttling.Api": Rule(_R, "too many requests to this API", 1),
    "Throttling": Rule(_R, "too many requests", 1),
    "isp.SYSTEM_ERROR": Rule(_R, "the provider's own fault"),
    "isv.AMOUNT_NOT_ENOUGH": Rule(_R, "the account is out of credit (欠费): top it up"),
    "isv.OUT_OF_SERVICE": Rule(_R, "the service is suspended for the account"),
    "isv.ACCOUNT_ABNORMAL": Rule(_R, "the account is abnormal: see the console"),
    "isp.RAM_PERMISSION_DENY": Rule(_R, "the key lacks the SMS permission"),
    "SignatureDoesNotMatch": Rule(_R, "the request signature was refused: check the secret"),
    "InvalidAccessKeyId.NotFound": Rule(_R, "unknown AccessKeyId: check the settings"),
    "InvalidAccessKeyId.Inactive": Rule(_R, "the AccessKeyId is disabled"),
    "isv.MOBILE_NUMBER_ILLEGAL": Rule(_F, "not a valid mobile number"),
    "isv.MOBILE_COUNT_OVER_LIMIT": Rule(_F, "too many numbers in one request"),
    "isv.TEMPLATE_MISSING_PARAMETERS": Rule(_F, "the template needs parameters not given"),
    "isv.SMS_TEMPLATE_ILLEGAL": Rule(_F, "the template is unknown or not approved"),
    "isv.SMS_SIGNATURE_ILLEGAL": Rule(_F, "the signature (签名) is unknown or not approved"),
    "isv.INVALID_PARAMETERS": Rule(_F, "a parameter is malformed"),
    "isv.INVALID_JSON_PARAM": Rule(_F, "the template parameters are not valid JSON"),
    "isv.PARAM_LENGTH_LIMIT": Rule(_F, "a template parameter is too long"),
    "isv.BLACK_KEY_CONTROL_LIMIT": Rule(_F, "the text contains a forbidden word"),
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED": Rule(_F, "this template cannot go to this number"),
}
PREFIXES = [("isp.", Rule(_R, "the provider's own fault")), ("isv.", Rule(_F, "refused"))]


def percent(value: str) -> str:
    """RFC 3986 encoding as the signature needs it (space %20, ``*`` %2A, ``~`` kept)."""
    return urllib.parse.quote(value, safe="-_.~")


def signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """Signature v1 of the RPC API: HMAC-SHA1 over the sorted, encoded parameters."""
    canonical = "&".join(f"{percent(k)}={percent(params[k])}" for k in sorted(params))
    to_sign = f"{method}&{percent('/')}&{percent(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class AliyunSms(SmsChannel):
    provider = "Alibaba Cloud SMS"
    max_batch = 100
    per_request = 100

    def __init__(
        self,
        *,
        access_key_id: str,
        access_key_secret: str,
        endpoint: str = ENDPOINT,
        region: str = "cn-hangzhou",
        **options: Any,
    ) -> None:
        """``options``: ``sign_name``, ``timeout_s``, ``clock``, ``transport`` (SmsChannel)."""
        super().__init__(endpoint=endpoint, **options)
        self._key_id = access_key_id
        self._secret = access_key_secret
        self._region = region

    def batch_key(self, message: Message) -> Hashable:
        return message.template_code  # SendBatchSms: one template, parameters per number

    async def _call(self, action: str, params: Mapping[str, str]) -> tuple[int, bytes]:
        signed = {
            "AccessKeyId": self._key_id,
            "Action": action,
            "Format": "JSON",
            "RegionId": self._region,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": self.now().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": VERSION,
            **params,
        }
        signed["Signature"] = signature("POST", signed, self._secret)
        response = await self.client.post(f"{self.endpoint}/", data=signed)
        return response.status_code, response.content

    async def send_batch(self, batch: list[Message], context: str) -> list[SendResult]:
        code = batch[0].template_code or ""
        if len(batch) == 1:
            action, params = (
                "SendSms",
                {
                    "PhoneNumbers": batch[0].address,
                    "SignName": self.sign_name,
                    "TemplateCode": code,
                    "TemplateParam": json.dumps(dict(batch[0].template_params), ensure_ascii=False),
                    "OutId": context,
                },
            )
        else:
            action, params = (
                "SendBatchSms",
                {
                    "PhoneNumberJson": json.dumps([m.address for m in batch]),
                    "SignNameJson": json.dumps([self.sign_name] * len(batch), ensure_ascii=False),
                    "TemplateCode": code,
                    "TemplateParamJson": json.dumps(
                        [dict(m.template_params) for m in batch], ensure_ascii=False
                    ),
                    "OutId": context,
                },
            )
        status, body = await self._call(action, params)
        answer = json_object(body)
        if answer is None or not isinstance(answer.get("Code"), str):
            result = garbage(status, body, self.provider)
            if result.outcome is Outcome.UNCLEAR:
                return self.unclear(batch, context, result.error or "")
            return [result] * len(batch)
        if answer["Code"] == "OK" and isinstance(answer.get("BizId"), str):
            return [SendResult(Outcome.SENT, provider_id=answer["BizId"])] * len(batch)
        if answer["Code"] == "OK":
            return self.unclear(batch, context, f"{self.provider}: OK without a BizId")
        refusal = judge(
            self.provider,
            answer["Code"],
            str(answer.get("Message", "")),
            CODES,
            PREFIXES,
            self.now(),
        )
        return [refusal] * len(batch)

    async def receipt(self, message: Message, provider_id: str | None) -> SendResult | None:
        context = self.context_of(message, provider_id)
        biz_id = self.own_id(provider_id)
        today = self.now().astimezone(SHANGHAI).date()
        for day in (today, today - dt.timedelta(days=1)):
            params = {
                "PhoneNumber": message.address,
                "SendDate": day.strftime("%Y%m%d"),
                "PageSize": "50",
                "CurrentPage": "1",
            }
            if biz_id:
                params["BizId"] = biz_id
            try:
                _, body = await self._call("QuerySendDetails", params)
            except TRANSPORT_ERRORS:
                return None
            answer = json_object(body)
            if answer is None or answer.get("Code") != "OK":
                return None
            for record in _records(answer):
                if biz_id or record.get("OutId") == context:
                    return _from_record(record, biz_id)
        return SendResult(
            Outcome.RETRY, error=f"{self.provider} has no record of it: it was not sent"
        )


def _records(answer: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    dtos = answer.get("SmsSendDetailDTOs")
    records = dtos.get("SmsSendDetailDTO") if isinstance(dtos, dict) else None
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def _from_record(record: Mapping[str, Any], biz_id: str | None) -> SendResult:
    # SendStatus: 1 waiting for the receipt, 2 failed, 3 delivered.
    status = record.get("SendStatus")
    if status == 2:
        return SendResult(
            Outcome.FAILED,
            provider_id=biz_id,
            error=f"Alibaba Cloud SMS receipt: not delivered ({record.get('ErrCode')})",
        )
    return SendResult(Outcome.SENT, provider_id=biz_id, delivered=status == 3)
