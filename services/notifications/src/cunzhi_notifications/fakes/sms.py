"""Fake Alibaba Cloud and Tencent Cloud SMS APIs: they check the request signature, refuse
what the real ones refuse (a bad number, a missing template, too many numbers), remember every
accepted send with its echoed context (``OutId`` / ``SessionContext``) and answer receipt
queries. Injected faults (``fail``) apply to sending actions only; receipts always answer.

``fake.sent`` lists every accepted SMS (one per number); ``fake.report`` is the status report
new sends get (``"delivered"``, ``"failed"`` or ``None`` for no report yet).
"""

from __future__ import annotations

import datetime as dt
import hmac
import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cunzhi_platform.clock import SHANGHAI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..channels import aliyun, tencent
from .server import FakeServer, Fault, form_or_query

MOBILE = re.compile(r"^(\+86|0086|86)?1[3-9]\d{9}$")


@dataclass
class SentSms:
    phone: str
    sign_name: str
    template_code: str
    params: Any
    """Alibaba: the parameter object; Tencent: the positional list."""
    context: str
    """What the caller asked to be echoed: ``OutId`` or ``SessionContext``."""
    provider_id: str
    """``BizId`` (Alibaba, per request) or ``SerialNo`` (Tencent, per number)."""
    at: dt.datetime
    report: str | None


class FakeSms(FakeServer):
    def __init__(self, key_id: str = "fake-key-id", key_secret: str = "fake-key-secret") -> None:
        super().__init__()
        self.key_id, self.key_secret = key_id, key_secret
        self.sent: list[SentSms] = []
        self.report: str | None = "delivered"
        self.requests = 0
        self._ids = itertools.count(1)

    def sent_to(self, phone: str) -> list[SentSms]:
        return [s for s in self.sent if s.phone.endswith(phone[-11:])]

    def _record(
        self, phone: str, sign: str, template: str, params: Any, context: str, provider_id: str
    ) -> None:
        now = dt.datetime.now(SHANGHAI)
        self.sent.append(
            SentSms(phone, sign, template, params, context, provider_id, now, self.report)
        )


class FakeAliyunSms(FakeSms):
    """``POST /`` with Action SendSms, SendBatchSms or QuerySendDetails (also by GET)."""

    THROTTLED = "isv.BUSINESS_LIMIT_CONTROL"

    def routes(self) -> list[Route]:
        return [Route("/", self.handle, methods=["GET", "POST"])]

    @staticmethod
    def _reply(code: str, message: str, status: int = 200, **extra: Any) -> Response:
        return JSONResponse(
            {"Code": code, "Message": message, "RequestId": str(uuid.uuid4()), **extra},
            status_code=status,
        )

    def _refusal(self, fault: Fault) -> Response:
        return self._reply(str(fault.code), f"injected: {fault.code}", fault.status or 200)

    async def handle(self, request: Request) -> Response:
        self.requests += 1
        params = await form_or_query(request)
        given = params.pop("Signature", "")
        if params.get("AccessKeyId") != self.key_id:
            return self._reply(
                "InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404
            )
        expected = aliyun.signature(request.method, params, self.key_secret)
        if not hmac.compare_digest(given, expected):
            return self._reply(
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
                400,
            )
        action = params.get("Action")
        if action == "QuerySendDetails":
            return self._query(params)
        if action not in ("SendSms", "SendBatchSms"):
            return self._reply("InvalidAction.NotFound", f"unknown action {action}", 404)

        async def normal() -> Response:
            return self._send(params)

        return await self.answer(self.next_fault(), normal, self._refusal)

    def _send(self, params: dict[str, str]) -> Response:
        try:
            if params["Action"] == "SendSms":
                phones = params["PhoneNumbers"].split(",")
                signs = [params["SignName"]] * len(phones)
                values = [json.loads(params.get("TemplateParam") or "{}")] * len(phones)
            else:
                phones = json.loads(params["PhoneNumberJson"])
                signs = json.loads(params["SignNameJson"])
                values = json.loads(params.get("TemplateParamJson") or "[]") or [{}] * len(phones)
        except KeyError as exc:
            return self._reply("MissingParameter", f"{exc.args[0]} is mandatory", 400)
        except ValueError:
            return self._reply("isv.INVALID_JSON_PARAM", "JSON parameter is not valid")
        limit = 1000 if params["Action"] == "SendSms" else 100
        if len(phones) > limit:
            return self._reply("isv.MOBILE_COUNT_OVER_LIMIT", f"more than {limit} numbers")
        if not (len(phones) == len(signs) == len(values)):
            return self._reply("isv.INVALID_PARAMETERS", "the JSON lists differ in length")
        if not params.get("TemplateCode"):
            return self._reply("isv.SMS_TEMPLATE_ILLEGAL", "template is not valid")
        if not all(signs):
            return self._reply("isv.SMS_SIGNATURE_ILLEGAL", "signature is not valid")
        if not all(MOBILE.match(p) for p in phones):
            return self._reply("isv.MOBILE_NUMBER_ILLEGAL", "invalid mobile number")
        biz_id = f"{next(self._ids):018d}^0"
        for phone, sign, value in zip(phones, signs, values, strict=True):
            self._record(
                phone, sign, params["TemplateCode"], value, params.get("OutId", ""), biz_id
            )
        return self._reply("OK", "OK", BizId=biz_id)

    def _query(self, params: dict[str, str]) -> Response:
        phone, day = params.get("PhoneNumber", ""), params.get("SendDate", "")
        records = [
            s
            for s in self.sent
            if s.phone == phone
            and s.at.strftime("%Y%m%d") == day
            and params.get("BizId") in (None, s.provider_id)
        ]
        status = {"delivered": 3, "failed": 2, None: 1}
        dtos = [
            {
                "PhoneNum": s.phone,
                "SendStatus": status[s.report],
                "ErrCode": "DELIVERED" if s.report == "delivered" else "UNDELIV",
                "TemplateCode": s.template_code,
                "Content": f"【{s.sign_name}】{json.dumps(s.params, ensure_ascii=False)}",
                "SendDate": s.at.strftime("%Y-%m-%d %H:%M:%S"),
                "ReceiveDate": s.at.strftime("%Y-%m-%d %H:%M:%S"),
                "OutId": s.context,
            }
            for s in records
        ]
        return self._reply(
            "OK", "OK", TotalCount=len(dtos), SmsSendDetailDTOs={"SmsSendDetailDTO": dtos}
        )


class FakeTencentSms(FakeSms):
    """``POST /`` with ``X-TC-Action`` SendSms or PullSmsSendStatusByPhoneNumber."""

    THROTTLED = "LimitExceeded.PhoneNumberDailyLimit"

    def __init__(
        self,
        key_id: str = "fake-secret-id",
        key_secret: str = "fake-secret-key",
        sdk_app_id: str = "1400000000",
    ) -> None:
        super().__init__(key_id, key_secret)
        self.sdk_app_id = sdk_app_id

    def routes(self) -> list[Route]:
        return [Route("/", self.handle, methods=["POST"])]

    @staticmethod
    def _reply(**response: Any) -> Response:
        return JSONResponse({"Response": {**response, "RequestId": str(uuid.uuid4())}})

    def _error(self, code: str, message: str) -> Response:
        return self._reply(Error={"Code": code, "Message": message})

    def _refusal(self, fault: Fault, payload: dict[str, Any]) -> Response:
        """Sending limits come per number, as Tencent reports them; others for the request."""
        code = str(fault.code)
        if code.startswith(("AuthFailure", "InternalError", "RequestLimitExceeded")):
            return self._error(code, f"injected: {code}")
        return self._per_number(code, payload)

    async def handle(self, request: Request) -> Response:
        self.requests += 1
        body = await request.body()
        denied = self._authenticate(request, body)
        if denied is not None:
            return denied
        try:
            payload = json.loads(body)
        except ValueError:
            return self._error("FailedOperation.FailResolvePacket", "the body is not JSON")
        action = request.headers.get("x-tc-action")
        if action == "PullSmsSendStatusByPhoneNumber":
            return self._pull(payload)
        if action != "SendSms":
            return self._error("InvalidAction", f"unknown action {action}")

        async def normal() -> Response:
            return self._send(payload)

        return await self.answer(
            self.next_fault(), normal, lambda fault: self._refusal(fault, payload)
        )

    def _authenticate(self, request: Request, body: bytes) -> Response | None:
        given = request.headers.get("authorization", "")
        stamp = request.headers.get("x-tc-timestamp", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
            return self._error("AuthFailure.SignatureExpire", "signature expired")
        match = re.match(r"TC3-HMAC-SHA256 Credential=([^/]+)/\d{4}-\d\d-\d\d/(\w+)/", given)
        if not match or match.group(1) != self.key_id:
            return self._error("AuthFailure.SecretIdNotFound", "the SecretId is not found")
        expected = tencent.authorization(
            secret_id=self.key_id,
            secret_key=self.key_secret,
            host=request.headers.get("host", ""),
            payload=body.decode(),
            timestamp=int(stamp),
            service=match.group(2),
            content_type=request.headers.get("content-type", ""),
        )
        if not hmac.compare_digest(given, expected):
            return self._error("AuthFailure.SignatureFailure", "the signature is not valid")
        return None

    def _per_number(self, code: str, payload: dict[str, Any]) -> Response:
        return self._reply(
            SendStatusSet=[
                {
                    "SerialNo": "",
                    "PhoneNumber": tencent.e164(p),
                    "Fee": 0,
                    "SessionContext": payload.get("SessionContext", ""),
                    "Code": code,
                    "Message": f"injected: {code}",
                    "IsoCode": "CN",
                }
                for p in payload.get("PhoneNumberSet", [])
            ]
        )

    def _send(self, payload: dict[str, Any]) -> Response:
        phones = payload.get("PhoneNumberSet")
        if not isinstance(phones, list) or not phones:
            return self._error("MissingParameter", "PhoneNumberSet is mandatory")
        if len(phones) > 200:
            return self._error("LimitExceeded.PhoneNumberCountLimit", "more than 200 numbers")
        if payload.get("SmsSdkAppId") != self.sdk_app_id:
            return self._error("InvalidParameterValue.SdkAppIdNotExist", "unknown SdkAppId")
        if not payload.get("TemplateId"):
            return self._error("FailedOperation.TemplateIncorrectOrUnapproved", "no template")
        if not payload.get("SignName"):
            return self._error("FailedOperation.SignatureIncorrectOrUnapproved", "no signature")
        statuses = []
        for phone in phones:
            number = tencent.e164(str(phone))
            status = {
                "PhoneNumber": number,
                "SessionContext": payload.get("SessionContext", ""),
                "IsoCode": "CN",
            }
            if not MOBILE.match(number):
                status |= {
                    "SerialNo": "",
                    "Fee": 0,
                    "Code": "InvalidParameterValue.IncorrectPhoneNumber",
                    "Message": "invalid number",
                }
            else:
                serial = f"2645:{next(self._ids):030d}"
                self._record(
                    number,
                    payload["SignName"],
                    payload["TemplateId"],
                    payload.get("TemplateParamSet", []),
                    payload.get("SessionContext", ""),
                    serial,
                )
                status |= {"SerialNo": serial, "Fee": 1, "Code": "Ok", "Message": "send success"}
            statuses.append(status)
        return self._reply(SendStatusSet=statuses)

    def _pull(self, payload: dict[str, Any]) -> Response:
        phone = tencent.e164(str(payload.get("PhoneNumber", "")))
        begin, end = payload.get("BeginTime", 0), payload.get("EndTime", 2**40)
        records = [
            {
                "UserReceiveTime": int(s.at.timestamp()),
                "CountryCode": "86",
                "SubscriberNumber": s.phone[3:],
                "PhoneNumber": s.phone,
                "SerialNo": s.provider_id,
                "ReportStatus": "SUCCESS" if s.report == "delivered" else "FAIL",
                "Description": "DELIVRD" if s.report == "delivered" else "UNDELIV",
                "SessionContext": s.context,
            }
            for s in self.sent
            if s.phone == phone and s.report is not None and begin <= int(s.at.timestamp()) <= end
        ]
        return self._reply(PullSmsSendStatusSet=records[: int(payload.get("Limit", 100))])
