"""Request signatures against the providers' and the specification's published examples."""

from __future__ import annotations

import datetime as dt

from cunzhi_notifications.channels import aliyun, tencent
from cunzhi_notifications.channels.robots import dingtalk_sign
from cunzhi_notifications.channels.webhook import sign
from standardwebhooks.webhooks import Webhook


def test_aliyun_signature_matches_the_sms_documentation_example() -> None:
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "XML",
        "OutId": "123",
        "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007",
        "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    assert aliyun.signature("GET", params, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_aliyun_signature_matches_the_rpc_documentation_example() -> None:
    params = {
        "Format": "XML",
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "Version": "2014-05-26",
        "Timestamp": "2016-02-23T12:46:24Z",
    }
    assert aliyun.signature("GET", params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_aliyun_percent_encoding_follows_the_rpc_rules() -> None:
    assert aliyun.percent("a b*~/") == "a%20b%2A~%2F"
    assert aliyun.percent("派") == "%E6%B4%BE"


def test_tencent_tc3_signature_matches_the_documentation_example() -> None:
    header = tencent.authorization(
        secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
        secret_key="Gu5t9xGARNpq86cd98joQYCN3*******",
        host="cvm.tencentcloudapi.com",
        payload='{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], '
        '"Name": "instance-name"}]}',
        timestamp=1551113065,
        service="cvm",
    )
    assert header == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/"
        "tc3_request, SignedHeaders=content-type;host, "
        "Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
    )


def test_dingtalk_sign_is_hmac_sha256_of_timestamp_newline_secret() -> None:
    # Expected value computed independently: printf '1577262236757\nthis is secret' |
    # openssl dgst -sha256 -hmac 'this is secret' -binary | base64
    assert dingtalk_sign("this is secret", 1577262236757) == (
        "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM="
    )


def test_webhook_signature_matches_the_standard_webhooks_test_vector() -> None:
    at = dt.datetime.fromtimestamp(1614265330, dt.UTC)
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        at,
        '{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_webhook_signature_does_not_depend_on_the_clocks_time_zone() -> None:
    # The library reads a datetime's fields as UTC; a Shanghai time must be converted first.
    utc = dt.datetime.fromtimestamp(1614265330, dt.UTC)
    shanghai = utc.astimezone(dt.timezone(dt.timedelta(hours=8)))
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert sign(secret, "msg_1", shanghai, "{}") == sign(secret, "msg_1", utc, "{}")
    assert Webhook(secret).sign("msg_1", utc, "{}") == sign(secret, "msg_1", shanghai, "{}")
