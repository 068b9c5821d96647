"""Templates (通知模板): Jinja2, in Chinese, one per kind × channel, with sample data.

The built-in texts are written once per kind (a subject, a long text for the inbox, e-mail and
group robots, a short text for SMS) and laid out per channel; operators may replace any
kind × channel with their own, checked by rendering it with the kind's sample data first.
Rendering is sandboxed and strict: a variable the context lacks is an error, not an empty hole.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import StrictUndefined
from jinja2 import TemplateError as JinjaError
from jinja2.sandbox import SandboxedEnvironment

from .errors import TemplateError
from .kinds import CHANNELS, KINDS, kind

SMS_SIGNATURE = "【村治】"
SMS_SINGLE = 70
"""Characters in one SMS with Chinese text, signature included (Alibaba and Tencent alike)."""
SMS_SEGMENT = 67
"""Characters per part of a long SMS (the rest carries the concatenation header)."""
SMS_MAX = 500
"""The providers' limit on a long SMS, signature included."""

_env = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
)


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> jinja2.Template:
    """Compiling is most of a render's cost; templates change rarely, senders render many."""
    return _env.from_string(source)


@dataclass(frozen=True)
class Text:
    subject: str
    long: str
    short: str
    sample: Mapping[str, Any]


_TEXTS: dict[str, Text] = {
    "call_opened": Text(
        "乡村干部论坛议题征集",
        "{{ name }}：{{ forum_date }}乡村干部论坛开始征集议题，请于{{ closes_at }}前"
        "提交本村（站所）需要解决的问题。",
        "{{ name }}：{{ forum_date }}乡村干部论坛征集议题，请于{{ closes_at }}前提交。",
        {"name": "王书记", "forum_date": "10月30日", "closes_at": "10月23日17:00"},
    ),
    "call_closing": Text(
        "议题征集明日截止",
        "{{ name }}：{{ forum_date }}论坛的议题征集将于{{ closes_at }}截止，您尚未提交议题。",
        "{{ name }}：论坛议题征集{{ closes_at }}截止，您尚未提交。",
        {"name": "王书记", "forum_date": "10月30日", "closes_at": "10月23日17:00"},
    ),
    "topic_progress": Text(
        "议题进展：{{ title }}",
        "{{ name }}：您提交的议题“{{ title }}”{{ state }}。{% if reason %}说明：{{ reason }}"
        "{% endif %}",
        "{{ name }}：议题“{{ title | truncate(20, True, '…') }}”{{ state }}。"
        "{% if reason %}{{ reason | truncate(30, True, '…') }}{% endif %}",
        {"name": "李书记", "title": "流动党员管理", "state": "未被采纳", "reason": "已有政策覆盖"},
    ),
    "forum_notice": Text(
        "第{{ number }}期乡村干部论坛通知",
        "{{ name }}：第{{ number }}期乡村干部论坛定于{{ date }}在{{ place }}召开，议题为"
        "“{{ topic_title }}”。请提前准备发言。",
        "{{ name }}：第{{ number }}期论坛{{ date }}在{{ place }}召开，请准备发言。",
        {
            "name": "王书记",
            "number": 18,
            "date": "10月30日",
            "place": "关堤乡政府",
            "topic_title": "流动党员管理",
        },
    ),
    "forum_eve": Text(
        "明日论坛提醒",
        "{{ name }}：第{{ number }}期乡村干部论坛将于{{ date }}在{{ place }}召开，"
        "议题“{{ topic_title }}”，请携带发言材料准时参加。",
        "{{ name }}：第{{ number }}期论坛{{ date }}召开，请准时参加。",
        {
            "name": "王书记",
            "number": 18,
            "date": "10月30日",
            "place": "关堤乡政府",
            "topic_title": "流动党员管理",
        },
    ),
    "forum_postponed": Text(
        "论坛延期通知",
        "{{ name }}：原定{{ previous_date }}召开的乡村干部论坛改期至{{ date }}。原因：{{ reason }}",
        "{{ name }}：原定{{ previous_date }}的论坛改至{{ date }}召开。",
        {"name": "王书记", "previous_date": "10月30日", "date": "11月6日", "reason": "上级检查"},
    ),
    "forum_cancelled": Text(
        "论坛取消通知",
        "{{ name }}：原定召开的乡村干部论坛取消。原因：{{ reason }}",
        "{{ name }}：原定的乡村干部论坛取消。",
        {"name": "王书记", "reason": "议题已由上级统一部署"},
    ),
    "issue_unclaimed": Text(
        "群众诉求待领办：{{ title }}",
        "{{ name }}：{{ raised_on }}登记的群众诉求“{{ title }}”至今无人领办，请安排党员干部领办。",
        "{{ name }}：诉求“{{ title | truncate(20, True, '…') }}”无人领办，请安排。",
        {"name": "王书记", "title": "村东路灯不亮", "raised_on": "10月15日"},
    ),
    "issue_progress": Text(
        "领办进展：{{ title }}",
        "{{ name }}：群众诉求“{{ title }}”{{ progress }}：{{ note }}",
        "{{ name }}：诉求“{{ title | truncate(20, True, '…') }}”{{ progress }}。",
        {"name": "王书记", "title": "村东路灯不亮", "progress": "已办结", "note": "已更换灯具"},
    ),
    "task_due": Text(
        "任务将于{{ due_on }}到期",
        "{{ name }}：任务“{{ title }}”将于{{ due_on }}到期（还有{{ days }}个工作日），"
        "请按期完成并报告进展。",
        "{{ name }}：任务“{{ title | truncate(20, True, '…') }}”{{ due_on }}到期，请按期完成。",
        {"name": "李书记", "title": "流动党员台账建档", "due_on": "12月29日", "days": 3},
    ),
    "task_overdue": Text(
        "任务已逾期",
        "{{ name }}：任务“{{ title }}”已于{{ due_on }}到期仍未完成，请尽快办结并说明情况。",
        "{{ name }}：任务“{{ title | truncate(20, True, '…') }}”已逾期，请尽快办结。",
        {"name": "李书记", "title": "流动党员台账建档", "due_on": "12月29日"},
    ),
    "task_escalated": Text(
        "逾期任务督办",
        "{{ name }}：任务“{{ title }}”（{{ due_on }}到期）已逾期{{ days }}个工作日，"
        "现提级由{{ level }}督办。",
        "{{ name }}：任务“{{ title | truncate(20, True, '…') }}”逾期{{ days }}个工作日，"
        "提级{{ level }}督办。",
        {
            "name": "马主任",
            "title": "流动党员台账建档",
            "due_on": "12月29日",
            "days": 3,
            "level": "乡镇",
        },
    ),
    "task_progress": Text(
        "议题任务进展：{{ title }}",
        "{{ name }}：您提交的议题所形成的任务“{{ title }}”{{ progress }}。",
        "{{ name }}：任务“{{ title | truncate(20, True, '…') }}”{{ progress }}。",
        {"name": "李书记", "title": "流动党员台账建档", "progress": "进展至60%"},
    ),
    "red_light": Text(
        "亮红灯：{{ village_id }}",
        "{{ name }}：薄弱村{{ village_id }}整顿进度亮红灯。原因：{{ reason }}",
        "{{ name }}：薄弱村{{ village_id }}整顿亮红灯，请关注。",
        {"name": "组织部", "village_id": "v-12", "reason": "2项任务逾期，1份月报未按时报送"},
    ),
    "report_late": Text(
        "报告逾期",
        "{{ name }}：{{ subject }}第{{ period }}期{{ report }}应于{{ due_at }}前报送，至今未报。",
        "{{ name }}：{{ subject }}第{{ period }}期{{ report }}已逾期，请尽快报送。",
        {
            "name": "张组长",
            "subject": "薄弱村v-12",
            "period": 3,
            "report": "月度进展报告",
            "due_at": "11月5日 17:30",
        },
    ),
    "report_due": Text(
        "{{ report }}待报送",
        "{{ name }}：{{ subject }}第{{ period }}期{{ report }}"
        "（{{ period_start }}至{{ period_end }}）请于{{ due_at }}前报送。",
        "{{ name }}：{{ subject }}第{{ period }}期{{ report }}请于{{ due_at }}前报送。",
        {
            "name": "张组长",
            "subject": "薄弱村v-12",
            "period": 3,
            "report": "月度进展报告",
            "period_start": "11月1日",
            "period_end": "11月30日",
            "due_at": "12月3日 17:30",
        },
    ),
    "verification_requested": Text(
        "征求薄弱村候选名单核查意见",
        "{{ name }}：软弱涣散村整顿候选名单已产生，共{{ villages }}个村居，请于{{ respond_by }}前"
        "逐村提出核查意见（{{ campaign_id }}）。",
        "{{ name }}：薄弱村候选名单{{ villages }}个村居待核查，请于{{ respond_by }}前反馈意见。",
        {"name": "区纪委", "villages": 90, "respond_by": "10月9日", "campaign_id": "bincheng-R3"},
    ),
}

DIGEST = Text(
    "今日通知汇总（{{ items | length }}条）",
    "{{ name }}：{% for item in items %}\n{{ loop.index }}. {{ item.subject }}：{{ item.body }}"
    "{% endfor %}",
    "{{ name }}：您有{{ items | length }}条新通知，请登录村治查看。",
    {"name": "关堤乡党建群", "items": [{"subject": "议题进展", "body": "议题已合并"}]},
)


@dataclass(frozen=True)
class Template:
    subject: str
    body: str


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    sms_parts: int | None = None
    """For SMS: how many messages the provider bills it as."""


def default(kind_code: str, channel: str) -> Template:
    text = DIGEST if kind_code == "digest" else _TEXTS[kind(kind_code).code]
    return _layout(text, channel)


def _layout(text: Text, channel: str) -> Template:
    if channel not in CHANNELS:
        raise TemplateError(f"no templates for channel {channel!r}", field="channel")
    if channel == "sms":
        return Template(text.subject, text.short)
    if channel in ("wecom", "dingtalk"):
        return Template(text.subject, f"### {text.subject}\n{text.long}")
    return Template(text.subject, text.long)


def sample(kind_code: str) -> Mapping[str, Any]:
    return DIGEST.sample if kind_code == "digest" else _TEXTS[kind(kind_code).code].sample


def sms_parts(body: str) -> int:
    length = len(SMS_SIGNATURE) + len(body)
    return 1 if length <= SMS_SINGLE else -(-length // SMS_SEGMENT)


def render(template: Template, channel: str, context: Mapping[str, Any]) -> Rendered:
    """Render; a template error or an SMS past the providers' limit raises ``TemplateError``."""
    try:
        subject = _compiled(template.subject).render(context).strip()
        body = _compiled(template.body).render(context).strip()
    except JinjaError as exc:
        raise TemplateError(f"the template does not render: {exc}", field="body") from exc
    if channel != "sms":
        return Rendered(subject, body)
    if len(SMS_SIGNATURE) + len(body) > SMS_MAX:
        raise TemplateError(
            f"the SMS is {len(SMS_SIGNATURE) + len(body)} characters with its signature; "
            f"providers take at most {SMS_MAX}",
            field="body",
        )
    return Rendered(subject, body, sms_parts(body))


def check(kind_code: str, channel: str, template: Template) -> Rendered:
    """What an operator's template gives with the kind's sample data (refused if it fails)."""
    return render(template, channel, sample(kind_code))


def all_defaults() -> dict[tuple[str, str], Template]:
    return {(k, c): default(k, c) for k in (*KINDS, "digest") for c in CHANNELS if c != "webhook"}
