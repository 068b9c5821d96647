"""Templates (通知模板): Jinja2, in Chinese, one per kind × channel, with sample data.

The built-in texts are written once per kind (a subject, a long text for the inbox, e-mail and
group robots, a short text for SMS) and laid out per channel; operators may replace any
kind × channel with their own, checked by rendering it with the kind's sample data first.
Rendering is sandboxed and strict: a variable the context lacks is an error, not an empty hole.

Rendering is also bounded (ours): an operator's template is code run by every sender pass and a
preview, so one that loops, multiplies or pads without end must be refused in milliseconds, not
freeze the service. Jinja's sandbox bounds only ``range()``; ``_Bounded`` counts every loop
step, call and filter against a budget of steps, time and characters, refuses single operations
whose result would exceed ``MAX_VALUE`` before it is computed (``'x' * 10**10``, ``10**10**10``,
a padding width), and leaves out the filters, globals and string methods that multiply their
input (``indent``, ``wordwrap``, ``tojson``, ``lipsum``, ``str.center``…).
"""

from __future__ import annotations

import contextvars
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import StrictUndefined, nodes
from jinja2 import TemplateError as JinjaError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

from .errors import TemplateError
from .kinds import CHANNELS, KINDS, kind

SMS_SIGNATURE = "【村治】"
SMS_SINGLE = 70
"""Characters in one SMS with Chinese text, signature included (Alibaba and Tencent alike)."""
SMS_SEGMENT = 67
"""Characters per part of a long SMS (the rest carries the concatenation header)."""
SMS_MAX = 500
"""The providers' limit on a long SMS, signature included."""

MAX_OUTPUT = 20_000
"""Characters a rendered subject or body may have (ours: a digest of a day's notices is a few
thousand; a robot message takes 4,096 bytes, an e-mail far more than anyone reads)."""
MAX_VALUE = 64_000
"""Characters (or items) of any one value a template computes."""
MAX_STEPS = 20_000
"""Loop steps, calls and filters of one render (the built-in texts take a few dozen, a digest
of a day's notices a few hundred)."""
MAX_WORK = 2_000_000
"""Characters (or items) one render may compute in all."""
MAX_SECONDS = 1.0
"""Wall time of one render: the backstop for what the counts above do not see."""

_UNSAFE_FILTERS = ("indent", "wordwrap", "tojson", "pprint", "urlize", "xmlattr", "sum")
"""Filters whose output can be many times their input (a width, an indent, a wrap string, a
sum of lists): left out, not bounded one by one."""
_UNSAFE_METHODS = frozenset(
    {
        "center",
        "ljust",
        "rjust",
        "zfill",
        "expandtabs",
        "format",
        "format_map",
        "join",
        "replace",
        "translate",
        "maketrans",
    }
)
"""String methods that pad or multiply; the ``replace`` and ``join`` filters remain."""


class _Budget:
    """What one render may still spend."""

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.work = MAX_WORK
        self.deadline = time.monotonic() + MAX_SECONDS

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise TemplateError(f"模板运算超过{MAX_STEPS}步（循环或调用过多）")
        if time.monotonic() > self.deadline:
            raise TemplateError(f"模板渲染超过{MAX_SECONDS:g}秒")

    def spend(self, value: object) -> object:
        size = len(value) if isinstance(value, str | bytes | list | tuple | dict | set) else 0
        if size > MAX_VALUE:
            raise TemplateError(f"模板计算出的值过长（超过{MAX_VALUE}个字符或元素）")
        self.work -= size
        if self.work < 0:
            raise TemplateError(f"模板计算量过大（超过{MAX_WORK}个字符）")
        return value


_budget: contextvars.ContextVar[_Budget] = contextvars.ContextVar("template_budget")


def _refuse(reason: str) -> TemplateError:
    return TemplateError(f"模板中的运算结果过大：{reason}")


def _size(value: object) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else len(str(value))


def _check_repeat(sequence: object, times: object) -> None:
    if not isinstance(sequence, str | bytes | list | tuple) or not isinstance(times, int):
        return
    if len(sequence) * max(times, 0) > MAX_VALUE:
        raise _refuse(f"重复{times}次后超过{MAX_VALUE}个字符")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse before computing what would be too big (a product, a power, a padding width)."""
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "*":
        _check_repeat(left, right)
        _check_repeat(right, left)
        if ints and left.bit_length() + right.bit_length() > MAX_VALUE:
            raise _refuse("整数乘积过大")
    elif operator == "**" and ints and right > 0:
        if max(left.bit_length(), 1) * right > MAX_VALUE:
            raise _refuse(f"{left}的{right}次方过大")
    elif operator == "%" and isinstance(left, str):
        _check_format(left, right if isinstance(right, tuple | dict) else (right,))


_WIDTHS = re.compile(r"\d+")


def _check_format(fmt: str, args: Iterable[Any]) -> None:
    """``'%s' % x`` and the ``format`` filter: each placeholder may take the longest argument
    and be padded to any width written in it."""
    values = list(args.values()) if isinstance(args, dict) else list(args)
    longest = max((_size(v) for v in values), default=0)
    widths = sum(int(w) if len(w) < 6 else MAX_VALUE for w in _WIDTHS.findall(fmt))
    if len(fmt) + fmt.count("%") * longest + widths > MAX_VALUE:
        raise _refuse(f"格式化结果超过{MAX_VALUE}个字符")


def _check_filter(name: str, value: Any, params: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """The filters that can multiply their input, estimated before they run (``value`` is what
    is filtered, ``params`` what the template passes besides)."""
    for param in (*params, *kwargs.values()):
        if isinstance(param, int) and abs(param) > MAX_VALUE:
            raise _refuse(f"参数{param}过大")
    if name == "replace" and len(params) >= 2:
        s, old, new = str(value), str(params[0]), str(params[1])
        if len(s) + (len(s) // max(len(old), 1) + 1) * len(new) > MAX_VALUE:
            raise _refuse(f"替换结果超过{MAX_VALUE}个字符")
    elif name == "join" and isinstance(value, Sequence):
        sep = str(params[0] if params else kwargs.get("d", ""))
        if len(sep) * len(value) > MAX_VALUE:
            raise _refuse(f"连接结果超过{MAX_VALUE}个字符")
    elif name == "format":
        _check_format(str(value), kwargs or params)
    elif name == "center" and params and isinstance(params[0], int):
        _check_repeat(" ", params[0])


def _bounded_filter(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    # Jinja passes a filter marked pass_context (or eval_context, environment) that first.
    passed = 1 if getattr(f, "jinja_pass_arg", None) else 0

    @functools.wraps(f)  # keeps Jinja's pass_context marks
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget.get()
        budget.step()
        head, value, params = args[:passed], args[passed], args[passed + 1 :]
        if name == "join" and not isinstance(value, Sequence):
            value = list(value)  # a generator's items counted before they are joined
        _check_filter(name, value, params, kwargs)
        return budget.spend(f(*head, value, *params, **kwargs))

    return bounded


class _BoundedNamespace(Namespace):
    """``namespace()``, whose attributes cannot grow past ``MAX_VALUE`` (a loop doubling one)."""

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, _budget.get().spend(value))


def _steps(iterable: Iterable[Any]) -> Iterator[Any]:
    """A loop's items, each a step of the budget (nested loops multiply their steps)."""
    budget = _budget.get()
    for item in iterable:
        budget.step()
        yield item


def _tilde(parts: Iterable[Any]) -> str:
    """``a ~ b ~ …``, checked before it is joined: Jinja joins in one C call that no binop
    hook sees, so ten copies of a long value at each level would grow without a bound."""
    strings = [str(p) for p in parts]
    if sum(len(s) for s in strings) > MAX_VALUE:
        raise _refuse(f"用 ~ 连接的结果超过{MAX_VALUE}个字符")
    return str(_budget.get().spend("".join(strings)))


class _Bounding(NodeTransformer):
    """Loops count their steps; ``~`` joins through ``_tilde``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_steps", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(parts, "_tilde", [], [], None, None, lineno=node.lineno)


def _concat(parts: Iterable[str]) -> str:
    """What a macro or ``{% set %}`` block made, checked before it is joined."""
    parts = list(parts)
    if sum(len(p) for p in parts) > MAX_VALUE:
        raise _refuse(f"宏或块的输出超过{MAX_VALUE}个字符")
    return "".join(parts)


class _Bounded(ImmutableSandboxedEnvironment):
    """The sandbox (immutable: no ``list.append`` in a loop), with every operation bounded."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    concat = staticmethod(_concat)

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
        self.filters = {
            name: _bounded_filter(name, f)
            for name, f in self.filters.items()
            if name not in _UNSAFE_FILTERS
        }
        self.filters["_steps"] = _steps
        self.filters["_tilde"] = _tilde
        del self.globals["lipsum"]
        self.globals["namespace"] = _BoundedNamespace

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return _budget.get().spend(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> None:
        """``str.format`` pads to any width: refused with the other methods below, not wrapped."""
        return None

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _UNSAFE_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget.get()
        budget.step()
        return budget.spend(super().call(__context, __obj, *args, **kwargs))


_env = _Bounded()


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> jinja2.Template:
    """Compiling is most of a render's cost; templates change rarely, senders render many."""
    return _env.from_string(_Bounding().visit(_env.parse(source)))


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


def _render(source: str, context: Mapping[str, Any], budget: _Budget) -> str:
    out: list[str] = []
    size = 0
    for chunk in _compiled(source).generate(context):
        budget.step()
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise TemplateError(f"模板输出超过{MAX_OUTPUT}个字符")
        out.append(chunk)
    return "".join(out).strip()


def _part(source: str, context: Mapping[str, Any], budget: _Budget, field: str) -> str:
    """One part of the template (``subject`` or ``body``), refused under its own name."""
    try:
        return _render(source, context, budget)
    except TemplateError as exc:
        raise TemplateError(exc.message, field=field) from exc
    except JinjaError as exc:
        raise TemplateError(f"模板无法渲染：{exc}", field=field) from exc
    except Exception as exc:  # a template's own arithmetic or types: 1/0, 1 + "a", recursion
        raise TemplateError(f"模板无法渲染：{type(exc).__name__}: {exc}", field=field) from exc


def render(template: Template, channel: str, context: Mapping[str, Any]) -> Rendered:
    """Render within the bounds above; a template error, a bound reached or an SMS past the
    providers' limit raises ``TemplateError`` (the reason in Chinese, the part as its field)."""
    budget = _Budget()
    token = _budget.set(budget)
    try:
        subject = _part(template.subject, context, budget, "subject")
        body = _part(template.body, context, budget, "body")
    finally:
        _budget.reset(token)
    if channel != "sms":
        return Rendered(subject, body)
    if len(SMS_SIGNATURE) + len(body) > SMS_MAX:
        raise TemplateError(
            f"短信连同签名共{len(SMS_SIGNATURE) + len(body)}个字，服务商最多接受{SMS_MAX}个字",
            field="body",
        )
    return Rendered(subject, body, sms_parts(body))


def check(kind_code: str, channel: str, template: Template) -> Rendered:
    """What an operator's template gives with the kind's sample data (refused if it fails)."""
    return render(template, channel, sample(kind_code))


def all_defaults() -> dict[tuple[str, str], Template]:
    return {(k, c): default(k, c) for k in (*KINDS, "digest") for c in CHANNELS if c != "webhook"}
