"""Sample contexts: realistic data for `Renderer.check()` and `answer.preview`.

They follow the context contract in `mailbot.answer.render`. Every value the admin owns is read
from the loaded rules (prices and notes, phone, target version, eligibility date, request kinds,
the unlock help text, modality labels, documents and file types), so a preview shows what a
customer would be sent under the rules as they are now, and `templates check` tries each
template against them. What stays literal is request data (companies, serials, keys, files)
and the unlock timing texts, whose wording `mailbot.decide.unlock` builds (see `sample_unlock`).

Adding a template: register a function returning ``{variant label: context}`` in `SAMPLES`, one
variant per branch of the template; the first variant is the preview's default.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

from mailbot.ruleset import Ruleset

SAMPLE_TODAY = dt.date(2026, 3, 10)
SAMPLE_JANUARY = dt.date(2026, 1, 14)

Variants = dict[str, dict[str, Any]]


def sample_installation(rules: Ruleset, *, has_support: bool, today: dt.date,
                        users: int | None = 2,
                        support_until: dt.date | None = None) -> dict[str, Any]:
    """An installation section as a customer with this support would read it."""
    if support_until is None and has_support:
        support_until = dt.date(today.year, 12, 31)
    return rules.free_update.installation.offer(support_until=support_until, users=users,
                                                today=today)


@dataclass(frozen=True)
class SampleData:
    """The rules a set of samples is built from, and the pieces every sample shares."""

    rules: Ruleset

    # --- from rules/free_update.toml and rules/kinds.toml -----------------------------------

    def installation(self, *, has_support: bool, today: dt.date = SAMPLE_TODAY,
                     users: int | None = 2) -> dict[str, Any]:
        return sample_installation(self.rules, has_support=has_support, today=today,
                                   users=users)

    def before_eligibility(self, days: int) -> dt.date:
        """A purchase date `days` before the rules' eligibility date (not eligible)."""
        return self.rules.free_update.eligible_from - dt.timedelta(days=days)

    def eligible_purchase(self) -> dt.date:
        """A purchase date after the eligibility date, so sample rows stay on the right side."""
        return self.rules.free_update.eligible_from + dt.timedelta(days=73)

    def kind(self, kind_id: str, fallback_title: str, fallback_subject: str) -> tuple[str, str]:
        """The kind's title and first subject; the fallback when the rules have no such kind."""
        try:
            kind = self.rules.kind(kind_id)
        except KeyError:
            return fallback_title, fallback_subject
        return kind.title, kind.subjects[0]

    def unlock_kind(self) -> dict[str, str]:
        title, subject = self.kind("unlock", "Desbloqueo", "Solicitud de desbloqueo")
        return {"kind_title": title, "original_subject": subject}

    # --- from rules/unlock.toml (absent: what the pipeline passes without unlock rules) -----

    def identify_help(self) -> str:
        return self.rules.unlock.identify_help if self.rules.unlock else ""

    def modality_label(self, modality: str) -> str | None:
        unlock = self.rules.unlock
        return unlock.modalities[modality].label if unlock else None

    def documents_required(self, modality: str) -> str | None:
        unlock = self.rules.unlock
        return unlock.modalities[modality].documents_required if unlock else None

    def document_types_text(self) -> str | None:
        """"PDF, JPG, JPEG o PNG", as `mailbot.decide.unlock` writes the accepted types."""
        if self.rules.unlock is None:
            return None
        types = [t.upper() for t in self.rules.unlock.document_types]
        return types[0] if len(types) == 1 else f"{', '.join(types[:-1])} o {types[-1]}"

    # --- contexts ---------------------------------------------------------------------------

    def base(self, today: dt.date = SAMPLE_TODAY) -> dict[str, Any]:
        """The keys every customer reply receives."""
        free = self.rules.free_update
        title, subject = self.kind("free_update", "Claves para actualización sin costo",
                                   "Solicitud de claves para actualización sin costo")
        return {
            "reference": "CLV-000042",
            "kind_title": title,
            "original_subject": subject,
            "requester": {"email": "rgonzalez@empresamuestra.com.mx",
                          "name": "Raúl González Rivera"},
            "today": today,
            "target_version": free.target_version,
            "phone": free.installation.phone,
            "eligible_from": free.eligible_from,
            "bot_name": "Claves de actualización",
            "rows": [],
            "problems": [],
            "identify_help": self.identify_help(),
        }

    def ctx(self, today: dt.date = SAMPLE_TODAY, **extra: Any) -> dict[str, Any]:
        ctx = self.base(today)
        ctx.update(extra)
        return ctx

    def row(self, serial: str, system: str, outcome: str, *, key: str | None = None,
            installation: dict[str, Any] | None = None, redirected: bool = False,
            recipient: str | None = "rg*******@em***.com.mx", source: str = "body",
            purchase_date: dt.date | None | EllipsisType = ...) -> dict[str, Any]:
        """One `rows` entry; bought after the eligibility date unless `purchase_date` is given."""
        return {
            "serial": serial, "system": system, "company": "Empresa de muestra S.A. de C.V.",
            "contact_name": "Raúl González Rivera", "outcome": outcome, "key": key,
            "recipient_masked": recipient if outcome == "issued" else None,
            "redirected": redirected, "source": source, "reasons": [],
            "purchase_date": (self.eligible_purchase() if purchase_date is ...
                              else purchase_date),
            "installation": installation,
        }

    def unlock(self, **facts: Any) -> dict[str, Any]:
        """See `sample_unlock`."""
        unlock: dict[str, Any] = {
            "serial": _UNLOCK_SERIAL, "system": _COMERCIAL, "outcome": "unlocked",
            "modality": "suscripcion", "modality_label": self.modality_label("suscripcion"),
            "number": 1, "number_text": "primer",
            "minutes_text": "inmediato o puede demorar de 10 a 15 minutos",
            "hours_text": None, "window_text": None, "window_start_text": None,
            "window_end_text": None, "due_text": None, "documents_required": None,
            "document_types_text": self.document_types_text(), "documents": [],
            "ignored_documents": [], "review_reason": None, "repeat": False,
            "approved_by": None,
        }
        unlock.update(facts)
        return unlock

    def unlock_ctx(self, unlock: dict[str, Any], **extra: Any) -> dict[str, Any]:
        values: dict[str, Any] = dict(
            self.unlock_kind(),
            requester={"email": "administracion@tallerhermanosruiz.com.mx",
                       "name": "Ernesto Ruiz Carrillo"},
            rows=[self.row(unlock["serial"], unlock["system"], unlock["outcome"])],
            unlock=unlock)
        values.update(extra)
        return self.ctx(**values)


def sample_unlock(rules: Ruleset, **facts: Any) -> dict[str, Any]:
    """An `unlock` dict as `mailbot.answer.plan.unlock_context` builds it (every key present).

    A first automatic unlock of a subscription unless `facts` say otherwise. The minutes, hours
    and window texts are literal: their wording is built in `mailbot.decide.unlock`, which
    answer/ may not import, and a copy here would be a second wording to keep in step.
    """
    return SampleData(rules).unlock(**facts)


_UNLOCK_SERIAL = "R8TZ-5N1Q-6WHK-2JCE"
_COMERCIAL = "CONTPAQ i Comercial"
_FE = "CONTPAQ i Factura electrónica"
_CO = "CONTPAQ i Contabilidad"
_NO = "CONTPAQ i Nóminas"
_BA = "CONTPAQ i Bancos"
_XLSX = "attachment:Relacion de sistemas sin costo.xlsx:row {}"

_PROBLEMS = [
    {"code": "missing_field", "field": "serial", "field_label": "Número de serie",
     "source": "body", "detail": "no value for serial"},
    {"code": "invalid_serial", "field": "serial", "field_label": "Número de serie",
     "source": _XLSX.format(4), "detail": "'AAAA-BBBB-CC' is not four groups of four"},
    {"code": "unknown_system", "field": "system", "field_label": "Tipo de sistema",
     "source": _XLSX.format(5), "detail": "'Contpaq Ultra' is not in the catalogue"},
    {"code": "invalid_email", "field": "contact_email",
     "field_label": "Correo electrónico del contacto", "source": "body",
     "detail": "'rgonzalez@' is not an e-mail address"},
    {"code": "unreadable_attachment", "field": None, "field_label": None,
     "source": "attachment:claves.xlsx", "detail": "encrypted workbook"},
    {"code": "unsupported_attachment", "field": None, "field_label": None,
     "source": "attachment:claves.pdf", "detail": "application/pdf"},
    {"code": "no_request_data", "field": None, "field_label": None, "source": None,
     "detail": "no labelled fields found"},
    {"code": "too_many_rows", "field": None, "field_label": None,
     "source": "attachment:claves.xlsx", "detail": "more than 2000 rows"},
]


def _keys_issued(s: SampleData) -> Variants:
    with_support = s.installation(has_support=True)
    without = s.installation(has_support=False, users=5)
    january = s.installation(has_support=False, today=SAMPLE_JANUARY, users=10)
    return {
        "con póliza vigente": s.ctx(rows=[s.row(
            "AAAA-BBBB-CCCC-DDDD", _FE, "issued", key="FE12-7KQ4-M2ZP-99XA",
            installation=with_support)]),
        "sin póliza, marzo": s.ctx(rows=[s.row(
            "AAAA-BBBB-CCCC-DDDD", _FE, "issued", key="FE12-7KQ4-M2ZP-99XA",
            installation=without)]),
        "sin póliza, enero": s.ctx(SAMPLE_JANUARY, rows=[s.row(
            "AAAA-BBBB-CCCC-DDDD", _FE, "issued", key="FE12-7KQ4-M2ZP-99XA",
            installation=january)]),
        "varios sistemas, con y sin póliza, usuarios desconocidos y más de 20": s.ctx(rows=[
            s.row("AAAA-BBBB-CCCC-DDDD", _FE, "issued", key="FE12-7KQ4-M2ZP-99XA",
                  installation=with_support, source=_XLSX.format(2)),
            s.row("AAAA-BBBB-CCCC-EEEE", _CO, "issued", key="CO12-3HHT-8WQ1-L0VE",
                  installation=s.installation(has_support=False, users=None),
                  source=_XLSX.format(3)),
            s.row("AAAA-BBBB-CCCC-FFFF", _NO, "issued", key="NO12-55RT-ZX8C-1MPA",
                  installation=s.installation(has_support=False, users=35),
                  source=_XLSX.format(4)),
        ]),
        "enviadas al contacto registrado": s.ctx(
            requester={"email": "compras@otrodominio.com", "name": ""},
            rows=[s.row("AAAA-BBBB-CCCC-DDDD", _FE, "issued", key="FE12-7KQ4-M2ZP-99XA",
                        installation=without, redirected=True)]),
    }


def _results(s: SampleData) -> Variants:
    without = s.installation(has_support=False, users=2)
    with_support = s.installation(has_support=True)
    rows = [
        s.row("AAAA-BBBB-CCCC-DDDD", _FE, "issued", key="FE12-7KQ4-M2ZP-99XA",
              installation=without, source=_XLSX.format(2)),
        s.row("AAAA-BBBB-CCCC-EEEE", _CO, "issued", key=None, installation=with_support,
              redirected=True, recipient="co*******@em***.com.mx", source=_XLSX.format(3)),
        s.row("AAAA-BBBB-CCCC-FFFF", _NO, "not_eligible",
              purchase_date=s.before_eligibility(240), source=_XLSX.format(4)),
        s.row("AAAA-BBBB-CCCC-GGGG", _BA, "review", source=_XLSX.format(5)),
        s.row("AAAA-BBBB-CCCC-HHHH", _FE, "pending", installation=without,
              source=_XLSX.format(6)),
    ]
    return {
        "resultados mixtos con filas ilegibles": s.ctx(rows=rows, problems=_PROBLEMS[1:3]),
        "resultados en enero sin problemas": s.ctx(
            SAMPLE_JANUARY,
            rows=[dict(rows[0], installation=s.installation(
                has_support=False, today=SAMPLE_JANUARY, users=20)), rows[2]]),
    }


def _results_summary(s: SampleData) -> Variants:
    """Many rows: the summary is built by the planner itself, from 120 sample rows."""
    from mailbot.answer.plan import Planned, summary

    answers = s.rules.free_update.answers
    without = s.installation(has_support=False, users=2)
    with_support = s.installation(has_support=True)
    outcomes = ["issued"] * 90 + ["not_eligible"] * 12 + ["review"] * 10 + ["pending"] * 8
    rows = [s.row(f"AAAA-BBBB-{n // 100:04d}-{n % 100:04d}", _FE, o,
                  key=f"FE12-7KQ4-M2ZP-{n:04d}" if o == "issued" and n % 9 else None,
                  redirected=o == "issued" and not n % 9,
                  installation=(with_support if n % 3 else without)
                  if o in ("issued", "pending") else None,
                  purchase_date=s.before_eligibility(30) if o == "not_eligible" else ...,
                  source=_XLSX.format(n + 2)) for n, o in enumerate(outcomes)]
    sheet = "resultados-CLV-000042.xlsx"

    def ctx(planned: Planned, **extra: Any) -> dict[str, Any]:
        return s.ctx(rows=list(planned.rows), summary=summary(planned, answers),
                     attachment=sheet, **extra)

    to_contact = [dict(r, key="FE12-7KQ4-M2ZP-0001", redirected=True) for r in rows[:40]]
    return {
        "resultados mixtos con filas ilegibles": ctx(
            Planned("reply", "results_summary", "x@y.mx", tuple(rows)), problems=_PROBLEMS[1:3]),
        "todas las claves emitidas": ctx(
            Planned("reply", "results_summary", "x@y.mx",
                    tuple(r for r in rows if r["key"]))),
        "claves al contacto registrado": ctx(
            Planned("keys", "results_summary", "x@y.mx", tuple(to_contact)),
            requester={"email": "compras@otrodominio.com", "name": ""}),
    }


def _missing_data(s: SampleData) -> Variants:
    return {
        "todos los problemas": s.ctx(problems=_PROBLEMS),
        "sin datos": s.ctx(requester={"email": "rgonzalez@empresamuestra.com.mx", "name": ""},
                           problems=[_PROBLEMS[6]]),
    }


def _not_eligible(s: SampleData) -> Variants:
    return {
        "un sistema": s.ctx(rows=[s.row("AAAA-BBBB-CCCC-DDDD", _FE, "not_eligible",
                                        purchase_date=s.before_eligibility(240))]),
        "sin fecha de compra": s.ctx(rows=[
            s.row("AAAA-BBBB-CCCC-DDDD", _FE, "not_eligible", purchase_date=None),
            s.row("AAAA-BBBB-CCCC-EEEE", _CO, "not_eligible",
                  purchase_date=s.before_eligibility(880)),
        ]),
    }


def _under_review(s: SampleData) -> Variants:
    return {
        "con sistemas": s.ctx(rows=[s.row("AAAA-BBBB-CCCC-DDDD", _FE, "review")]),
        "desbloqueo, sin filas": s.ctx(**s.unlock_kind()),
    }


def _pending_keys(s: SampleData) -> Variants:
    return {
        "sin póliza": s.ctx(rows=[s.row("AAAA-BBBB-CCCC-DDDD", _FE, "pending", installation=(
            s.installation(has_support=False, users=1)))]),
        "con póliza": s.ctx(rows=[s.row("AAAA-BBBB-CCCC-DDDD", _FE, "pending", installation=(
            s.installation(has_support=True)))]),
    }


def _keys_redirected(s: SampleData) -> Variants:
    requester = {"email": "compras@otrodominio.com", "name": "Laura Pérez"}
    return {
        "un sistema": s.ctx(requester=requester, rows=[s.row(
            "AAAA-BBBB-CCCC-DDDD", _FE, "issued", redirected=True,
            installation=s.installation(has_support=True))]),
        "dos destinatarios": s.ctx(requester=requester, rows=[
            s.row("AAAA-BBBB-CCCC-DDDD", _FE, "issued", redirected=True,
                  installation=s.installation(has_support=False)),
            s.row("AAAA-BBBB-CCCC-EEEE", _CO, "issued", redirected=True,
                  recipient="co*******@em***.com.mx",
                  installation=s.installation(has_support=False)),
        ]),
    }


def _operator_alert(s: SampleData) -> Variants:
    return {
        "avisos": {
            "bot_name": "Claves de actualización", "today": SAMPLE_TODAY,
            "alerts": [
                {"title": "Solicitud para revisión",
                 "detail": "CLV-000042 de rgonzalez@empresamuestra.com.mx: review",
                 "reference": "CLV-000042"},
                {"title": "Sin claves disponibles",
                 "detail": "CLV-000043: no quedan claves para CONTPAQ i Nóminas",
                 "reference": "CLV-000043"},
                {"title": "Envío fallido", "detail": "<abc@example.com> a x@example.com: 550",
                 "reference": None},
            ],
        },
    }


_WINDOW_4_24 = dict(
    hours_text="de 4 a 24 horas hábiles",
    window_text="entre el martes 10 de marzo de 2026 a las 14:00 h y el miércoles 11 de marzo "
                "de 2026 a las 10:00 h (hora del centro de México)",
    window_start_text="martes 10 de marzo de 2026 a las 14:00 h (hora del centro de México)",
    window_end_text="miércoles 11 de marzo de 2026 a las 10:00 h (hora del centro de México)",
    due_text="miércoles 11 de marzo de 2026 a las 10:00 h (hora del centro de México)")
_WINDOW_24_48 = dict(
    hours_text="de 24 a 48 horas hábiles",
    window_text="entre el jueves 12 de marzo de 2026 a las 10:00 h y el lunes 16 de marzo de "
                "2026 a las 10:00 h (hora del centro de México)",
    window_start_text="jueves 12 de marzo de 2026 a las 10:00 h (hora del centro de México)",
    window_end_text="lunes 16 de marzo de 2026 a las 10:00 h (hora del centro de México)",
    due_text="lunes 16 de marzo de 2026 a las 10:00 h (hora del centro de México)")


def _unlocked(s: SampleData) -> Variants:
    return {
        "1.er desbloqueo automático": s.unlock_ctx(s.unlock()),
        "aprobado por un operador": s.unlock_ctx(s.unlock(
            number=2, number_text="segundo", approved_by="ana")),
        "repetición de uno ya aprobado": s.unlock_ctx(s.unlock(repeat=True)),
        "sin tiempos en las reglas": s.unlock_ctx(s.unlock(
            minutes_text=None, modality_label=None, number_text=None), identify_help=""),
    }


def _unlock_review(s: SampleData) -> Variants:
    review = dict(outcome="review", minutes_text=None, number=2, number_text="segundo")
    return {
        "2.º desbloqueo de suscripción": s.unlock_ctx(s.unlock(
            review_reason="policy", **review, **_WINDOW_4_24)),
        "remitente distinto del registrado": s.unlock_ctx(s.unlock(
            review_reason="other_requester", **dict(review, number=None, number_text=None),
            due_text=_WINDOW_4_24["due_text"])),
        "ya en revisión (repetición)": s.unlock_ctx(s.unlock(
            review_reason="policy", repeat=True, **review, **_WINDOW_4_24)),
        "sin plazo": s.unlock_ctx(s.unlock(review_reason="no_unlock_rules", **review)),
    }


def _documents_needed(s: SampleData) -> Variants:
    needed = dict(outcome="documents_needed", minutes_text=None,
                  hours_text="de 24 a 48 horas hábiles")
    return {
        "licencia física": s.unlock_ctx(s.unlock(
            modality="fisico", modality_label=s.modality_label("fisico"),
            documents_required=s.documents_required("fisico"), **needed)),
        "2.º desbloqueo electrónico, con un archivo no aceptado": s.unlock_ctx(s.unlock(
            modality="electronico", modality_label=s.modality_label("electronico"), number=2,
            number_text="segundo", documents_required=s.documents_required("electronico"),
            ignored_documents=["carta.docx"], **needed)),
    }


def _documents_received(s: SampleData) -> Variants:
    received = dict(outcome="review", modality="fisico",
                    modality_label=s.modality_label("fisico"), minutes_text=None,
                    review_reason="documents_to_check", **_WINDOW_24_48)
    return {
        "certificado recibido": s.unlock_ctx(s.unlock(
            documents=["certificado.pdf"], **received)),
        "con un archivo no aceptado": s.unlock_ctx(s.unlock(
            documents=["certificado.jpg"], ignored_documents=["nota.docx"], **received)),
    }


def _unlock_missing_data(s: SampleData) -> Variants:
    return {
        "falta la serie": s.ctx(**s.unlock_kind(), problems=[_PROBLEMS[0]]),
        "sin datos": s.ctx(**s.unlock_kind()),
    }


def _review_rejected(s: SampleData) -> Variants:
    return {
        "con nota": s.ctx(rows=[s.row("AAAA-BBBB-CCCC-DDDD", _FE, "rejected")],
                          note="La serie no corresponde a la empresa que indica en su correo."),
        "correo que no era solicitud": s.ctx(kind_title="", note="Este buzón atiende solo "
                                             "solicitudes de claves y desbloqueos."),
        "sin nota": s.ctx(rows=[s.row("AAAA-BBBB-CCCC-DDDD", _FE, "rejected")], note=""),
    }


def _unlock_rejected(s: SampleData) -> Variants:
    return {
        "con nota": s.unlock_ctx(s.unlock(outcome="rejected", minutes_text=None),
                                 note="El certificado enviado no es legible."),
        "sin nota": s.unlock_ctx(s.unlock(outcome="rejected", minutes_text=None,
                                          document_types_text=None), note=""),
    }


# Template name -> a function returning {variant label: context}; the first is the default.
SAMPLES: dict[str, Callable[[SampleData], Variants]] = {
    "keys_issued": _keys_issued,
    "results": _results,
    "results_summary": _results_summary,
    "missing_data": _missing_data,
    "not_eligible": _not_eligible,
    "under_review": _under_review,
    "pending_keys": _pending_keys,
    "keys_redirected": _keys_redirected,
    "operator_alert": _operator_alert,
    "unlocked": _unlocked,
    "unlock_review": _unlock_review,
    "documents_needed": _documents_needed,
    "documents_received": _documents_received,
    "unlock_missing_data": _unlock_missing_data,
    "review_rejected": _review_rejected,
    "unlock_rejected": _unlock_rejected,
}


def sample_contexts(name: str, rules: Ruleset) -> Variants:
    """Every sample context of `name` (covering its branches); the common keys if unknown."""
    data = SampleData(rules)
    factory = SAMPLES.get(name)
    return factory(data) if factory else {"datos comunes": data.base()}


def sample_context(name: str, rules: Ruleset) -> dict[str, Any]:
    """The default sample context of `name`, for previews."""
    return next(iter(sample_contexts(name, rules).values()))


# Strings templates compare rather than print (the contract's codes): kept in a hostile variant,
# so that it still reaches every branch the sample does.
_CODES = frozenset({"outcome", "code", "field", "modality", "review_reason"})


def hostile_context(context: Any, markup: str) -> Any:
    """`context` with every string a template prints replaced by `markup`: the worst a sender
    controls (a name, a serial, an attachment's file name), for proving that HTML parts escape
    it. Codes stay (`_CODES`); a source keeps its shape with `markup` as the file name.
    """
    if isinstance(context, dict):
        return {key: (value if key in _CODES and isinstance(value, str)
                      else _hostile_source(value, markup) if key == "source"
                      else hostile_context(value, markup))
                for key, value in context.items()}
    if isinstance(context, (list, tuple)):
        return type(context)(hostile_context(value, markup) for value in context)
    return markup if isinstance(context, str) else context


def _hostile_source(source: Any, markup: str) -> Any:
    """"attachment:x.xlsx:row 3" -> "attachment:<markup>:row 3"; "body" and None stay."""
    if not isinstance(source, str) or not source.startswith("attachment:"):
        return source
    row = source.rpartition(":")[2] if source.count(":") >= 2 else ""
    return f"attachment:{markup}" + (f":{row}" if row.startswith("row ") else "")
