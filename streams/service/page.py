"""The seller page and the operator overview: plain HTML, CSS and JavaScript, rendered here.

Without JavaScript the page shows the rating as rendered on the server; with it, the page
follows the seller's event stream (/sellers/{id}/stream) and redraws in place, highlighting
what changed and the time of the last update. Nothing is fetched from outside the worker.
No Faust import: the views pass in the documents.
"""

from __future__ import annotations

from html import escape
from typing import Any

from streams.core.timeutil import parse_ts

NAMES = {"potential_products": "Potential products", "top_super_products": "Top and super products",
         "response_time": "Response time (h)", "active_buyers": "Active buyers",
         "conversion_rate": "Conversion rate", "marketing_index": "Marketing index"}

CSS = """
:root{--ink:#1d2530;--muted:#5b6675;--line:#d9dee5;--accent:#0b63c5;--warn:#a64b00;--ok:#1f7a3a}
*{box-sizing:border-box}body{margin:0;font:16px/1.45 system-ui,sans-serif;color:var(--ink);background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:16px}h1{font-size:1.4rem;margin:.2rem 0}
h2{font-size:1.05rem;margin:1.2rem 0 .5rem}section{background:#fff;border:1px solid var(--line);
border-radius:8px;padding:12px 14px;margin:12px 0}.grid{display:grid;gap:12px;grid-template-columns:1fr}
@media(min-width:800px){.grid{grid-template-columns:1fr 1fr}}
.stars{font-size:2rem;letter-spacing:2px;color:#c98a00}.muted{color:var(--muted)}
table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:6px 4px;border-bottom:1px solid var(--line);
vertical-align:top}td.num{text-align:right;white-space:nowrap}.risk-unhealthy{color:var(--warn);font-weight:600}
.flash{animation:flash 1.5s ease-out}@keyframes flash{from{background:#fff3c4}to{background:transparent}}
svg{width:100%;height:auto}
.scroll{overflow-x:auto}td.next{overflow-wrap:anywhere}
@media(max-width:600px){body{font-size:15px}main{padding:8px}th,td{padding:5px 3px}.stars{font-size:1.6rem}}
a{color:var(--accent)}button{font:inherit;padding:4px 10px}
.warning{border-color:var(--warn);color:var(--warn)}:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
"""

SCRIPT = r"""
(function(){
const root=document.querySelector('[data-seller]');if(!root)return;
const seller=root.dataset.seller,token=root.dataset.token,loaded=Date.now();
let clock=Date.parse(root.dataset.asOf),paused=false;
const $=s=>document.querySelector(s),stars=n=>'★'.repeat(n)+'☆'.repeat(Math.max(5-n,0));
function flash(el){if(!el)return;el.classList.remove('flash');void el.offsetWidth;el.classList.add('flash')}
function chart(r){const p=r.projection;if(!p)return'';const t0=Date.parse(r.as_of),t1=Date.parse(p.at);
 const pts=[[t0,r.stars]].concat(p.timeline.map(e=>[Date.parse(e.at),e.stars]));pts.push([t1,p.stars]);
 const x=t=>10+580*(t-t0)/Math.max(t1-t0,1),y=s=>110-s*20;let d='M'+x(pts[0][0])+' '+y(pts[0][1]);
 for(let i=1;i<pts.length;i++){d+=' H'+x(pts[i][0])+' V'+y(pts[i][1])}
 return '<svg viewBox="0 0 600 130" role="img" aria-label="Projected stars until '+p.at+'">'+
 [0,1,2,3,4,5].map(s=>'<text x="0" y="'+(y(s)+4)+'" font-size="10" fill="#5b6675">'+s+'</text>').join('')+
 '<path d="'+d+'" fill="none" stroke="#0b63c5" stroke-width="2"/>'+
 pts.slice(1,-1).map(q=>'<circle cx="'+x(q[0])+'" cy="'+y(q[1])+'" r="3" fill="#a64b00"/>').join('')+'</svg>'}
function render(r){if(!r||paused)return;clock=Date.parse(r.as_of);
 $('#stars').textContent=stars(r.stars);$('#stars').setAttribute('aria-label',r.stars+' stars');
 $('#stars-n').textContent=r.stars;$('#risk').textContent=r.risk;$('#risk').className='risk-'+r.risk;
 $('#as-of').textContent=r.as_of;
 for(const[name,b]of Object.entries(r.indicators)){const row=document.getElementById('ind-'+name);if(!row)continue;
  const v=row.querySelector('.value'),s=row.querySelector('.istars'),n=row.querySelector('.next');
  const nv=b.value===null?'—':(Number.isInteger(b.value)?b.value:+b.value.toPrecision(4));
  if(v.textContent!=String(nv)||s.textContent!=String(b.stars)){flash(row)}
  v.textContent=nv;s.textContent=b.stars;n.textContent=b.next_star?b.next_star.needs:'top'}
 const p=r.projection;if(p){$('#proj-stars').textContent=p.stars+' on '+p.at;
  $('#proj-chart').innerHTML=chart(r);
  $('#timeline').innerHTML=p.timeline.length?p.timeline.map(e=>'<li>'+e.at+': '+e.stars+' stars'+
   (Object.keys(e.indicators).length?' ('+Object.keys(e.indicators).join(', ')+')':'')+'</li>').join(''):
   '<li>No change ahead if nothing else happens.</li>'}
 $('#updated').textContent='Last update '+new Date().toLocaleTimeString()+' (rated as of '+r.as_of+')';
 flash($('#summary'))}
function tick(){const now=clock+(Date.now()-loaded);document.querySelectorAll('[data-reply-by]').forEach(el=>{
 const left=Date.parse(el.dataset.replyBy)-now;if(left<=0){el.textContent='overdue';return}
 const h=Math.floor(left/3600000),m=Math.floor(left%3600000/60000),s=Math.floor(left%60000/1000);
 el.textContent=h+'h '+String(m).padStart(2,'0')+'m '+String(s).padStart(2,'0')+'s left'})}
setInterval(tick,1000);tick();
$('#pause').addEventListener('click',e=>{paused=!paused;e.target.setAttribute('aria-pressed',paused);
 e.target.textContent=paused?'Resume live updates':'Pause live updates'});
const es=new EventSource('/sellers/'+encodeURIComponent(seller)+'/stream'+
 (token?'?token='+encodeURIComponent(token):''));
es.addEventListener('snapshot',e=>{const r=JSON.parse(e.data);if(r)render(r)});
es.addEventListener('forecast',e=>render(JSON.parse(e.data)));
es.addEventListener('warning',e=>{const w=JSON.parse(e.data);const el=$('#warning');el.hidden=w.kind!=='warning';
 if(w.kind==='warning'){el.textContent='Warning: '+w.projected_stars+' stars projected for '+w.projected_at+
 ' (first drop '+w.first_drop.at+')';flash(el)}});
$('#live').textContent='Live updates on';es.onerror=()=>{$('#live').textContent='Reconnecting…'};
es.onopen=()=>{$('#live').textContent='Live updates on'};
})();
"""


def _stars(n: int) -> str:
    return "★" * n + "☆" * max(5 - n, 0)


def _value(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def projection_svg(rating: dict[str, Any]) -> str:
    """The projected stars from as_of to the month's end, as a step chart."""
    projection = rating.get("projection")
    if not projection:
        return ""
    t0, t1 = parse_ts(rating["as_of"]), parse_ts(projection["at"])
    points = [(t0, rating["stars"])] + [(parse_ts(e["at"]), e["stars"]) for e in projection["timeline"]]
    points.append((t1, projection["stars"]))

    def x(t: int) -> float:
        return round(10 + 580 * (t - t0) / max(t1 - t0, 1), 1)

    def y(s: int) -> int:
        return 110 - s * 20

    path = f"M{x(points[0][0])} {y(points[0][1])}" + "".join(f" H{x(t)} V{y(s)}" for t, s in points[1:])
    labels = "".join(f'<text x="0" y="{y(s) + 4}" font-size="10" fill="#5b6675">{s}</text>' for s in range(6))
    dots = "".join(f'<circle cx="{x(t)}" cy="{y(s)}" r="3" fill="#a64b00"/>' for t, s in points[1:-1])
    return (f'<svg viewBox="0 0 600 130" role="img" aria-label="Projected stars until {escape(projection["at"])}">'
            f'{labels}<path d="{path}" fill="none" stroke="#0b63c5" stroke-width="2"/>{dots}</svg>')


def history_svg(months: list[dict[str, Any]]) -> str:
    """The official stars of the last months, oldest first, as bars."""
    if not months:
        return '<p class="muted">No official month yet.</p>'
    ordered = list(reversed(months))
    width = 600 / max(len(ordered), 1)
    bars = "".join(
        f'<rect x="{i * width + 4:.1f}" y="{110 - m["stars"] * 20}" width="{width - 8:.1f}" '
        f'height="{max(m["stars"] * 20, 1)}" fill="#0b63c5"><title>{escape(m["month"])}: {m["stars"]} stars</title>'
        f'</rect><text x="{i * width + width / 2:.1f}" y="126" font-size="10" text-anchor="middle">'
        f'{escape(m["month"][2:])}</text>' for i, m in enumerate(ordered))
    return f'<svg viewBox="0 0 600 130" role="img" aria-label="Official stars by month">{bars}</svg>'


def seller_page(rating: dict[str, Any], actions: dict[str, Any] | None, months: list[dict[str, Any]],
                token: str | None) -> str:
    seller = rating["seller_id"]
    rows = "".join(
        f'<tr id="ind-{escape(name)}"><th scope="row">{escape(NAMES.get(name, name))}</th>'
        f'<td class="num value">{escape(_value(block.get("value")))}</td>'
        f'<td class="num istars">{block.get("stars")}</td>'
        f'<td class="next">{escape((block.get("next_star") or {}).get("needs", "top"))}</td></tr>'
        for name, block in rating["indicators"].items())
    projection = rating.get("projection") or {}
    timeline = "".join(
        f'<li>{escape(e["at"])}: {e["stars"]} stars'
        f'{" (" + escape(", ".join(e["indicators"])) + ")" if e["indicators"] else ""}</li>'
        for e in projection.get("timeline", [])) or "<li>No change ahead if nothing else happens.</li>"
    conversations = "".join(
        f'<li>{escape(c["conversation_id"])}: first message {escape(c["first_message_at"])}, reply by '
        f'{escape(c["reply_by"])} — <span data-reply-by="{escape(c["reply_by"])}">time left</span></li>'
        for c in (actions or {}).get("unanswered_conversations", [])) or "<li>None waiting.</li>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(seller)} — star rating</title><style>{CSS}</style></head>
<body><main data-seller="{escape(seller)}" data-token="{escape(token or '')}" data-as-of="{escape(rating['as_of'])}">
<h1>Star rating of {escape(seller)}</h1>
<p><span id="live" class="muted">Live updates off (no JavaScript)</span> ·
<span id="updated" class="muted">Rated as of {escape(rating['as_of'])}</span>
<button id="pause" type="button" aria-pressed="false">Pause live updates</button></p>
<section id="warning" class="warning" role="status" hidden></section>
<section id="summary" aria-labelledby="now-h"><h2 id="now-h">Now</h2>
<p><span id="stars" class="stars" aria-label="{rating['stars']} stars">{_stars(rating['stars'])}</span>
<span id="stars-n" hidden>{rating['stars']}</span>
Risk: <span id="risk" class="risk-{escape(rating['risk'])}">{escape(rating['risk'])}</span>
· as of <span id="as-of">{escape(rating['as_of'])}</span></p>
<div class="scroll"><table><caption class="muted">Each indicator, its stars and what the next star needs</caption>
<thead><tr><th scope="col">Indicator</th><th scope="col">Value</th><th scope="col">Stars</th>
<th scope="col">Next star</th></tr></thead><tbody>{rows}</tbody></table></div></section>
<div class="grid">
<section aria-labelledby="proj-h"><h2 id="proj-h">This month if nothing else happens</h2>
<p>Official rating: <strong id="proj-stars">{projection.get('stars', '—')} on
{escape(projection.get('at', '—'))}</strong></p>
<div id="proj-chart">{projection_svg(rating)}</div><ol id="timeline">{timeline}</ol></section>
<section aria-labelledby="conv-h"><h2 id="conv-h">Conversations waiting for a reply</h2>
<ul>{conversations}</ul></section>
</div>
<section aria-labelledby="hist-h"><h2 id="hist-h">Official stars, last 12 months</h2>{history_svg(months)}</section>
</main><script>{SCRIPT}</script></body></html>"""


def overview_page(ratings: list[dict[str, Any]], token: str | None) -> str:
    query = f"?token={escape(token)}" if token else ""
    rows = "".join(
        f'<tr><td><a href="/sellers/{escape(r["seller_id"])}/page{query}">{escape(r["seller_id"])}</a></td>'
        f'<td class="num">{r["stars"]}</td><td>{escape(r["risk"])}</td>'
        f'<td class="num">{(r.get("projection") or {}).get("stars", "—")}</td></tr>' for r in ratings)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>starcast — sellers</title><style>{CSS}</style></head><body><main>
<h1>Sellers by stars</h1><p class="muted">{len(ratings)} sellers rated by this worker.</p>
<section><table><thead><tr><th scope="col">Seller</th><th scope="col">Stars</th><th scope="col">Risk</th>
<th scope="col">Projected</th></tr></thead><tbody>{rows}</tbody></table></section></main></body></html>"""
