#!/usr/bin/env python3
# tests/depth/make-corpus.py — writes tests/depth/: one defect per file, each a mutation of an
# official R4 example, and manifest.json with the issues expected (see README.md).
#
#   tests/depth/make-corpus.py PACKAGE_DIR [KIND...]
#
# PACKAGE_DIR is the unpacked hl7.fhir.r4.examples@4.0.1 (fhir/package/fetch-r4-package prints it).
# Regenerate the whole corpus (all kinds), or the manifest keeps only the kinds named.
import copy, json, os, sys
PKG = sys.argv[1]
OUT = os.path.dirname(os.path.abspath(__file__))
NS = 'xmlns="http://www.w3.org/1999/xhtml"'
manifest = []
counters = {}

def load(name):
    return json.load(open(os.path.join(PKG, name)))

def emit(kind, slug, base, doc, defect, issues):
    counters[kind] = counters.get(kind, 0) + 1
    os.makedirs(os.path.join(OUT, kind), exist_ok=True)
    rel = '%s/%03d-%s.json' % (kind, counters[kind], slug)
    with open(os.path.join(OUT, rel), 'w') as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write('\n')
    manifest.append({'file': rel, 'kind': kind, 'base': base, 'defect': defect, 'issues': issues})

def issue(sev, code, expr, contains=None):
    d = {'severity': sev, 'code': code, 'expression': expr}
    if contains:
        d['message'] = contains
    return d

def patient():
    return load('Patient-example.json')

def with_div(doc, div):
    d = copy.deepcopy(doc)
    d['text']['div'] = div
    return d

def narrative():
    k = 'narrative'
    p = patient()
    div = p['text']['div']
    inner = div[div.index('>') + 1: div.rindex('</div>')]
    def wrap(extra_inner, attrs=NS):
        return '<div %s>%s%s</div>' % (attrs, inner, extra_inner)
    E, W = 'error', 'warning'
    cases = [
        ('script-element', wrap('<script>alert(1)</script>'), 'a <script> element inside the div',
         [issue(E, 'invariant', 'Patient.text.div', 'txt-1')]),
        ('iframe-element', wrap('<iframe/>'), 'an <iframe> element', [issue(E, 'invariant', 'Patient.text.div', 'txt-1')]),
        ('form-element', wrap('<form><p>x</p></form>'), 'a <form> element', [issue(E, 'invariant', 'Patient.text.div', 'txt-1')]),
        ('style-element', wrap('<style>td { color: red }</style>'), 'a <style> element (only style attributes are allowed)',
         [issue(E, 'invariant', 'Patient.text.div', 'txt-1')]),
        ('onclick-attribute', wrap('<p onclick="alert(1)">x</p>'), 'an onclick event handler attribute',
         [issue(E, 'invariant', 'Patient.text.div', 'onclick')]),
        ('onerror-on-img', wrap('<img src="https://example.org/x.png" onerror="alert(1)"/>'), 'an onerror handler on an image',
         [issue(E, 'invariant', 'Patient.text.div', 'onerror')]),
        ('unknown-attribute', wrap('<p data-x="1">x</p>'), 'an attribute outside the allowed list',
         [issue(E, 'invariant', 'Patient.text.div', 'data-x')]),
        ('javascript-href', wrap('<a href="javascript:alert(1)">x</a>'), 'a javascript: link',
         [issue(E, 'invalid', 'Patient.text.div', 'script URLs')]),
        ('javascript-href-obfuscated', wrap('<a href="&#106;avascript&#58;alert(1)">x</a>'),
         'a javascript: link written with character references', [issue(E, 'invalid', 'Patient.text.div', 'script URLs')]),
        ('javascript-href-tab', wrap('<a href="java&#9;script:alert(1)">x</a>'), 'a javascript: link split by a tab',
         [issue(E, 'invalid', 'Patient.text.div', 'script URLs')]),
        ('data-html-href', wrap('<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>'), 'a data: link carrying HTML',
         [issue(E, 'invalid', 'Patient.text.div', 'data:')]),
        ('svg-data-image', wrap('<img src="data:image/svg+xml;base64,PHN2Zy8+"/>'), 'an inline SVG image (may script)',
         [issue(E, 'invalid', 'Patient.text.div', 'data:')]),
        ('style-expression', wrap('<span style="width: expression(alert(1))">x</span>'), 'script in a style attribute',
         [issue(E, 'invalid', 'Patient.text.div', 'style')]),
        ('undefined-entity', wrap('<p>a&nbsp;b</p>'), '&nbsp; is not an XML entity',
         [issue(E, 'invalid', 'Patient.text.div', '&nbsp;')]),
        ('bad-char-reference', wrap('<p>&#1;</p>'), 'a character reference to a non-XML character',
         [issue(E, 'invalid', 'Patient.text.div', '&#1;')]),
        ('doctype', '<!DOCTYPE div>' + wrap(''), 'a DOCTYPE before the div', [issue(E, 'invalid', 'Patient.text.div', 'DOCTYPE')]),
        ('processing-instruction', wrap('<?xml-stylesheet href="x.xsl"?>'), 'a processing instruction',
         [issue(E, 'invalid', 'Patient.text.div', 'processing')]),
        ('no-namespace', '<div>%s</div>' % inner, 'the div without the XHTML namespace',
         [issue(E, 'invalid', 'Patient.text.div', 'xmlns')]),
        ('wrong-namespace', '<div xmlns="http://www.w3.org/2000/svg">%s</div>' % inner, 'the div in the SVG namespace',
         [issue(E, 'invalid', 'Patient.text.div', 'namespace')]),
        ('root-not-div', '<span %s>%s</span>' % (NS, inner), 'a <span> as the root', [issue(E, 'invalid', 'Patient.text.div', 'root')]),
        ('unclosed-element', wrap('<p>open'), 'a <p> that is never closed', [issue(E, 'structure', 'Patient.text.div', 'well-formed')]),
        ('mismatched-end-tag', wrap('<b>x</i>'), '<b> closed by </i>', [issue(E, 'structure', 'Patient.text.div', 'well-formed')]),
        ('unquoted-attribute', wrap('<p class=x>y</p>'), 'an unquoted attribute value',
         [issue(E, 'structure', 'Patient.text.div', 'well-formed')]),
        ('duplicate-attribute', wrap('<p class="a" class="b">y</p>'), 'the same attribute twice',
         [issue(E, 'structure', 'Patient.text.div', 'well-formed')]),
        ('raw-less-than', wrap('<p>1 < 2</p>'), 'a raw < in text', [issue(E, 'structure', 'Patient.text.div', 'well-formed')]),
        ('second-root', wrap('') + '<div %s>more</div>' % NS, 'two root elements',
         [issue(E, 'structure', 'Patient.text.div', 'after the root')]),
        ('block-in-paragraph', wrap('<p>x<table><tr><td>y</td></tr></table></p>'), 'a table inside a paragraph',
         [issue(E, 'invalid', 'Patient.text.div', 'inside a <p>')]),
        ('empty-div', '<div %s>\n  <p> </p>\n</div>' % NS, 'no non-whitespace content',
         [issue(W, 'invariant', 'Patient.text.div', 'txt-2')]),
        ('dangling-image', wrap('<img src="#photo"/>'), 'an image naming an id nothing has',
         [issue(W, 'invalid', 'Patient.text.div', '#photo')]),
        ('dangling-link', wrap('<a href="#nowhere">x</a>'), 'a link naming an id nothing has',
         [issue(W, 'invalid', 'Patient.text.div', '#nowhere')]),
    ]
    for slug, d, defect, issues in cases:
        emit(k, slug, 'Patient-example.json', with_div(p, d), defect, issues)
    # deeper places: a contained resource, a Composition section, a Bundle entry
    c = load('Composition-example.json')
    c2 = copy.deepcopy(c)
    sdiv = c2['section'][0]['text']['div']
    c2['section'][0]['text']['div'] = sdiv.replace('</div>', '<script>x()</script></div>')
    emit(k, 'section-script', 'Composition-example.json', c2, 'a script in the first section\'s narrative',
         [issue(E, 'invariant', 'Composition.section[0].text.div', 'txt-1')])
    b = load('Bundle-father.json')
    b2 = copy.deepcopy(b)
    ediv = b2['entry'][1]['resource']['text']['div']
    b2['entry'][1]['resource']['text']['div'] = ediv.replace('</div>', '<a href="vbscript:x">x</a></div>', 1)
    emit(k, 'entry-vbscript', 'Bundle-father.json', b2, 'a vbscript: link in the second entry\'s narrative',
         [issue(E, 'invalid', 'Bundle.entry[1].resource.text.div', 'script URLs')])

def strings():
    k = 'strings'
    I, W = 'information', 'warning'
    p = patient()
    def pat(slug, text, defect, issues):
        d = copy.deepcopy(p)
        d['name'][0]['text'] = text
        emit(k, slug, 'Patient-example.json', d, defect, issues)
    pat('string-img-onerror', 'Peter <img src=x onerror=alert(1)>', 'an HTML image with an event handler in a string',
        [issue(I, 'invalid', 'Patient.name[0].text', 'HTML tag')])
    pat('string-script', '<script>alert(1)</script>Peter', 'a script element in a string',
        [issue(I, 'invalid', 'Patient.name[0].text', '<script>')])
    pat('string-whitespace-only', '   ', 'a string of nothing but spaces',
        [issue(W, 'invalid', 'Patient.name[0].text', 'whitespace')])
    g = load('Goal-example.json')
    d = copy.deepcopy(g)
    d['description']['text'] = 'Target weight <iframe src="https://example.org"></iframe>'
    emit(k, 'string-iframe', 'Goal-example.json', d, 'an iframe in CodeableConcept.text',
         [issue(I, 'invalid', 'Goal.description.text', '<iframe')])
    t = load('Task-example1.json')
    d = copy.deepcopy(t)
    d['description'] = d['description'] + ' </div><b>bold</b>'
    emit(k, 'string-closing-tag', 'Task-example1.json', d, 'markup that would close the receiver\'s own element',
         [issue(I, 'invalid', 'Task.description', '</div>')])
    o = load('Observation-blood-pressure-cancel.json')
    def note(slug, text, defect, issues):
        d = copy.deepcopy(o)
        d['note'][0]['text'] = text
        emit(k, slug, 'Observation-blood-pressure-cancel.json', d, defect, issues)
    base = o['note'][0]['text']
    note('markdown-script', base + '\n\n<script>alert(1)</script>', 'raw HTML script in markdown',
         [issue(W, 'invalid', 'Observation.note[0].text', '<script>')])
    note('markdown-img-onerror', base + ' <img src="x" onerror="alert(1)">', 'raw HTML image with a handler in markdown',
         [issue(W, 'invalid', 'Observation.note[0].text', '<img')])
    note('markdown-comment', base + ' <!-- hidden -->', 'an HTML comment in markdown',
         [issue(W, 'invalid', 'Observation.note[0].text', '<!--')])
    note('markdown-javascript-link', base + ' See [the order](javascript:alert(1)).', 'a markdown link to javascript:',
         [issue(W, 'invalid', 'Observation.note[0].text', 'javascript:')])
    note('markdown-data-link', base + ' See [the order]( data:text/html;base64,PHNjcmlwdD4=).', 'a markdown link to a data: URL',
         [issue(W, 'invalid', 'Observation.note[0].text', 'data:')])
    note('markdown-autolink-vbscript', base + ' <vbscript:msgbox(1)>', 'a markdown autolink to vbscript:',
         [issue(W, 'invalid', 'Observation.note[0].text', 'vbscript:')])
    note('markdown-svg-image', base + ' ![x](data:image/svg+xml;base64,PHN2Zy8+)', 'a markdown image of inline SVG',
         [issue(W, 'invalid', 'Observation.note[0].text', 'data:')])

SD = 'http://hl7.org/fhir/StructureDefinition/'

def extensions():
    k = 'extensions'
    E, W = 'error', 'warning'
    p = patient()
    bt = p['_birthDate']['extension'][0]
    def pat(slug, mutate, defect, issues):
        d = copy.deepcopy(p)
        mutate(d)
        emit(k, slug, 'Patient-example.json', d, defect, issues)
    def move_birthtime(d):
        del d['_birthDate']
        d['extension'] = [copy.deepcopy(bt)]
    pat('context-birthtime-on-patient', move_birthtime, 'patient-birthTime (context Patient.birthDate) on the Patient itself',
        [issue(E, 'structure', 'Patient.extension[0]', 'not allowed on Patient')])
    pat('context-own-prefix-on-given',
        lambda d: d['name'][0].__setitem__('_given', [{'extension': [{'url': SD + 'humanname-own-prefix', 'valueString': 'van'}]}, None]),
        'humanname-own-prefix (context HumanName.family) on a given name',
        [issue(E, 'structure', 'Patient.name[0].given[0].extension[0]', 'humanname-own-prefix')])
    pat('context-body-position-on-patient',
        lambda d: d.__setitem__('extension', [{'url': SD + 'observation-bodyPosition', 'valueCodeableConcept': {'text': 'sitting'}}]),
        'observation-bodyPosition (context Observation, Specimen.collection) on a Patient',
        [issue(E, 'structure', 'Patient.extension[0]', 'observation-bodyPosition')])
    pat('value-type-birthtime-string',
        lambda d: d['_birthDate'].__setitem__('extension', [{'url': bt['url'], 'valueString': 'quarter to three'}]),
        'patient-birthTime with a valueString where its definition allows dateTime only',
        [issue(E, 'structure', 'Patient.birthDate.extension[0].value.ofType(string)', 'does not allow the type string')])
    pat('value-binding-data-absent-reason',
        lambda d: d.__setitem__('_gender', {'extension': [{'url': SD + 'data-absent-reason', 'valueCode': 'forgot'}]}),
        'data-absent-reason with a code outside its required value set',
        [issue(E, 'code-invalid', 'Patient.gender.extension[0].value.ofType(code)', 'data-absent-reason')])
    pat('not-modifier-in-modifier-extension',
        lambda d: d.__setitem__('modifierExtension', [{'url': SD + 'patient-mothersMaidenName', 'valueString': 'Smith'}]),
        'patient-mothersMaidenName (not a modifier) in modifierExtension',
        [issue(E, 'structure', 'Patient.modifierExtension[0]', 'is not a modifier')])
    pat('modifier-out-of-context',
        lambda d: d.__setitem__('modifierExtension', [{'url': SD + 'request-doNotPerform', 'valueBoolean': True}]),
        'request-doNotPerform (context NutritionOrder) on a Patient',
        [issue(E, 'structure', 'Patient.modifierExtension[0]', 'not allowed on Patient')])
    pat('max-once-twice',
        lambda d: d.__setitem__('extension', [{'url': SD + 'patient-mothersMaidenName', 'valueString': 'Smith'},
                                              {'url': SD + 'patient-mothersMaidenName', 'valueString': 'Jones'}]),
        'patient-mothersMaidenName (0..1) twice on one Patient',
        [issue(E, 'structure', 'Patient.extension[1]', 'at most 1 time')])
    pat('complex-with-value',
        lambda d: d.__setitem__('extension', [{'url': SD + 'patient-nationality', 'valueString': 'Dutch'}]),
        'patient-nationality (complex: code and period parts) given a plain value',
        [issue(E, 'structure', 'Patient.extension[0].value[x]', 'at most 0')])
    pat('complex-part-wrong-type',
        lambda d: d.__setitem__('extension', [{'url': SD + 'patient-nationality',
                                               'extension': [{'url': 'code', 'valueString': 'NL'}]}]),
        'the code part of patient-nationality as a string where its definition says CodeableConcept',
        [issue(E, 'structure', 'Patient.extension[0].extension[0].value.ofType(string)', 'does not allow the type string')])
    pat('unknown-extension',
        lambda d: d.__setitem__('extension', [{'url': 'http://example.org/fhir/StructureDefinition/shoe-size', 'valueInteger': 44}]),
        'an extension no loaded definition describes (a warning, as the reference has it)',
        [issue(W, 'not-found', 'Patient.extension[0]', 'shoe-size')])
    n = load('NutritionOrder-cardiacdiet.json')
    d = copy.deepcopy(n)
    d['extension'] = [{'url': SD + 'request-doNotPerform', 'valueBoolean': True}]
    emit(k, 'modifier-in-extension', 'NutritionOrder-cardiacdiet.json', d,
         'request-doNotPerform (a modifier) in extension rather than modifierExtension',
         [issue(E, 'structure', 'NutritionOrder.extension[0]', 'is a modifier')])
    b = load('Bundle-father.json')
    d = copy.deepcopy(b)
    d['entry'][1]['resource']['extension'] = [copy.deepcopy(bt)]
    emit(k, 'context-in-bundle-entry', 'Bundle-father.json', d, 'patient-birthTime on the Practitioner of the second entry',
         [issue(E, 'structure', 'Bundle.entry[1].resource.extension[0]', 'not allowed on Practitioner')])

def bundles():
    k = 'bundles'
    E, W = 'error', 'warning'
    doc = load('Bundle-father.json')
    def d_(slug, mutate, defect, issues, base='Bundle-father.json', src=None):
        d = copy.deepcopy(src if src is not None else doc)
        mutate(d)
        emit(k, slug, base, d, defect, issues)
    d_('fullurl-type-mismatch', lambda d: d['entry'][1].__setitem__('fullUrl', 'http://fhir.healthintersections.com.au/open/Patient/example'),
       'a fullUrl naming a Patient for a Practitioner entry', [issue(E, 'value', 'Bundle.entry[1].fullUrl', 'names a Patient'),
                                                               issue(E, 'not-found', 'Bundle.entry[0].resource.author[0].reference')])
    d_('fullurl-id-mismatch', lambda d: d['entry'][1].__setitem__('fullUrl', 'http://fhir.healthintersections.com.au/open/Practitioner/other'),
       'a fullUrl naming another id than the resource has (a warning, as the reference has it)',
       [issue(W, 'value', 'Bundle.entry[1].fullUrl', "id 'other'"), issue(E, 'not-found', 'Bundle.entry[0].resource.author[0].reference')])
    d_('document-entry-without-fullurl', lambda d: d['entry'][3].pop('fullUrl'),
       'a document entry (the Encounter) without fullUrl',
       [issue(E, 'required', 'Bundle.entry[3]', 'fullUrl'), issue(E, 'not-found', 'Bundle.entry[0].resource.encounter.reference')])
    d_('document-composition-subject-missing', lambda d: d['entry'][0]['resource']['subject'].__setitem__('reference', 'http://fhir.healthintersections.com.au/open/Patient/d2'),
       'the Composition\'s subject is not in the document', [issue(E, 'not-found', 'Bundle.entry[0].resource.subject.reference')])
    d_('document-section-entry-missing', lambda d: d['entry'][0]['resource']['section'][0]['entry'][0].__setitem__('reference', 'urn:uuid:00000000-0000-4000-8000-000000000000'),
       'a section entry not in the document', [issue(E, 'not-found', 'Bundle.entry[0].resource.section[0].entry[0].reference')])
    d_('document-relative-author-missing', lambda d: d['entry'][0]['resource']['author'][0].__setitem__('reference', 'Practitioner/nobody'),
       'the Composition\'s author (relative) is not in the document', [issue(E, 'not-found', 'Bundle.entry[0].resource.author[0].reference')])
    msg = load('Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json')
    mh = msg['entry'][0]['resource']
    def msg_focus(d):
        d['entry'][0]['resource']['focus'] = [{'reference': 'urn:uuid:00000000-0000-4000-8000-0000000000aa'}]
    if 'focus' in mh:
        pass
    d_('message-focus-missing', msg_focus, 'the MessageHeader\'s focus is not in the message',
       [issue(E, 'not-found', 'Bundle.entry[0].resource.focus[0].reference')], base='Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json', src=msg)
    tx = load('Bundle-bundle-transaction.json')
    d_('put-id-mismatch', lambda d: d['entry'][2]['resource'].__setitem__('id', '124'),
       'PUT Patient/123 carrying a Patient with id 124', [issue(E, 'value', 'Bundle.entry[2].request.url', "id must be '123'"),
                                                           issue(W, 'value', 'Bundle.entry[2].fullUrl', "id '123'")],
       base='Bundle-bundle-transaction.json', src=tx)
    d_('put-type-mismatch', lambda d: d['entry'][2]['request'].__setitem__('url', 'Practitioner/123'),
       'PUT Practitioner/123 carrying a Patient', [issue(E, 'value', 'Bundle.entry[2].request.url', 'carries a Patient')],
       base='Bundle-bundle-transaction.json', src=tx)
    d_('put-without-id', lambda d: d['entry'][4]['resource'].pop('id'),
       'PUT Patient/123a carrying a Patient without id (its RESTful fullUrl then names no id either)',
       [issue(E, 'value', 'Bundle.entry[4].request.url', 'found none'),
        issue(E, 'value', 'Bundle.entry[4].fullUrl', 'resource has no id')],
       base='Bundle-bundle-transaction.json', src=tx)
    bundle_types(d_, tx)
    bundle_versions(d_, doc)

def bundle_types(d_, tx):
    '''What Bundle.type asks of entries and links (BundleValidator's rules and severities).'''
    E, W = 'error', 'warning'
    ss = load('Bundle-bundle-example.json')
    SS = 'Bundle-bundle-example.json'
    d_('restful-fullurl-without-id', lambda d: d['entry'][1]['resource'].pop('id'),
       'a document entry with a RESTful fullUrl (.../Practitioner/example) whose resource has no id',
       [issue(E, 'value', 'Bundle.entry[1].fullUrl', 'resource has no id')])
    d_('searchset-match-without-id', lambda d: d['entry'][0]['resource'].pop('id'),
       'a search match without id (its RESTful fullUrl then names no id either)',
       [issue(E, 'invalid', 'Bundle.entry[0].resource', 'must have ids'), issue(E, 'value', 'Bundle.entry[0].fullUrl', 'no id')],
       base=SS, src=ss)
    def include_urn(d):
        d['entry'][1]['fullUrl'] = 'urn:uuid:00000000-0000-4000-8000-0000000000b1'
        d['entry'][1]['resource'].pop('id')
    d_('searchset-include-without-id', include_urn, 'an included resource without id (named by a urn:uuid)',
       [issue(E, 'invalid', 'Bundle.entry[1].resource', 'must have ids')], base=SS, src=ss)
    d_('searchset-match-wrong-type', lambda d: d['link'][0].__setitem__('url', 'https://example.com/base/Observation?patient=347'),
       'the self link searched Observations, the match is a MedicationRequest',
       [issue(E, 'invalid', 'Bundle.entry[0].resource', 'not a match')], base=SS, src=ss)
    d_('searchset-match-not-in-type-parameter',
       lambda d: d['link'][0].__setitem__('url', 'https://example.com/base?_type=Observation,Condition&patient=347'),
       'the self link searched Observations and Conditions (_type), the match is a MedicationRequest',
       [issue(E, 'invalid', 'Bundle.entry[0].resource', 'not a match')], base=SS, src=ss)
    d_('searchset-outcome-not-operationoutcome', lambda d: d['entry'][1]['search'].__setitem__('mode', 'outcome'),
       'an entry of search.mode outcome holding a Medication',
       [issue(E, 'invalid', 'Bundle.entry[1].resource', 'OperationOutcome')], base=SS, src=ss)
    d_('searchset-without-self-link', lambda d: d['link'].pop(0), 'a searchset without a self link (a warning)',
       [issue(W, 'invalid', 'Bundle', 'self link')], base=SS, src=ss)
    d_('searchset-entry-without-mode', lambda d: d['entry'][1].pop('search'),
       'one searchset entry without search.mode while the other has one (a warning)',
       [issue(W, 'invalid', 'Bundle.entry[1]', 'search modes')], base=SS, src=ss)
    d_('searchset-entry-without-resource', lambda d: d['entry'][1].pop('resource'), 'a searchset entry without resource',
       [issue(E, 'invalid', 'Bundle.entry[1]', 'must have resources'), issue(E, 'invariant', 'Bundle.entry[1]', 'bdl-5')], base=SS, src=ss)
    d_('searchset-two-next-links', lambda d: d['link'].append(dict(d['link'][1])), 'two next links in a searchset',
       [issue(E, 'invalid', 'Bundle.link[2]', "'next' can only occur once")], base=SS, src=ss)
    d_('document-paging-link', lambda d: d.__setitem__('link', [{'relation': 'next', 'url': 'http://example.org/fhir/Bundle/father?page=2'}]),
       'a document with a next link (paging is for searchsets and histories)',
       [issue(E, 'invalid', 'Bundle.link[0].relation', "'next'")])
    d_('transaction-two-self-links', lambda d: d.__setitem__('link', [{'relation': 'self', 'url': 'http://example.org/fhir/a'},
                                                                        {'relation': 'self', 'url': 'http://example.org/fhir/b'}]),
       'a transaction with two self links', [issue(E, 'invalid', 'Bundle.link[1].relation', "'self' can only occur once")],
       base='Bundle-bundle-transaction.json', src=tx)
    d_('document-stylesheet-not-in-bundle', lambda d: d.__setitem__('link', [{'relation': 'stylesheet', 'url': 'Binary/style'}]),
       'a document stylesheet link to Binary/style, which the document does not carry',
       [issue(E, 'not-found', 'Bundle.link[0].url', 'stylesheet')])
    d_('document-stylesheet-external-http', lambda d: d.__setitem__('link', [{'relation': 'stylesheet', 'url': 'http://example.org/style.css'}]),
       'a document stylesheet on another server over http: (warnings)',
       [issue(W, 'business-rule', 'Bundle.link[0].url', 'external stylesheets'), issue(W, 'business-rule', 'Bundle.link[0].url', 'not secure')])
    def canonical_not_restful(d):
        d['entry'][0]['fullUrl'] = d['entry'][0]['resource']['url'] = 'http://hl7.org/fhir/us/sdc/questionnaires/54127-6'
    d_('canonical-fullurl-not-restful', canonical_not_restful,
       'a Questionnaire whose canonical url is its fullUrl, but not a RESTful .../Questionnaire/54127-6 URL',
       [issue(E, 'invalid', 'Bundle.entry[0].fullUrl', 'canonical url is its fullUrl')],
       base='Bundle-ussg-fht.json', src=load('Bundle-ussg-fht.json'))
    refs = load('Bundle-bundle-references.json')
    d_('collection-duplicate-fullurl', lambda d: d['entry'].append(copy.deepcopy(d['entry'][0])),
       'bdl-7: two entries of a collection with the same fullUrl and no meta.versionId',
       [issue(E, 'invariant', 'Bundle.entry[%d].fullUrl' % len(refs['entry']), 'bdl-7')],
       base='Bundle-bundle-references.json', src=refs)

PATIENT = 'http://fhir.healthintersections.com.au/open/Patient/d1'

def two_patient_versions(d, keep=None):
    '''Bundle-father carrying the Patient twice (meta.versionId 1 and 2, allowed by bdl-7), every
    reference to it made version-specific (to version 2), except the one at `keep` (a path of keys).'''
    first = d['entry'][2]
    first['resource']['meta'] = {'versionId': '1'}
    second = copy.deepcopy(first)
    second['resource']['meta'] = {'versionId': '2'}
    d['entry'].append(second)
    kept = d
    for key in keep or []:
        kept = kept[key]
    def walk(o):
        if isinstance(o, dict):
            if o is not kept and o.get('reference') in (PATIENT, 'Patient/d1'):
                o['reference'] += '/_history/2'
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(d)

def bundle_versions(d_, doc):
    '''Version-specific references in documents (bundle.html#references, BUNDLE_BUNDLE_ENTRY_FOUND_MULTIPLE).'''
    E = 'error'
    d_('document-ambiguous-reference', lambda d: two_patient_versions(d, ['entry', 0, 'resource', 'subject']),
       'the document carries the Patient in versions 1 and 2; the Composition\'s subject does not say which',
       [issue(E, 'invalid', 'Bundle.entry[0].resource.subject.reference', 'found 2 entries')])
    def unknown_version(d):
        d['entry'][2]['resource']['meta'] = {'versionId': '1'}
        d['entry'][0]['resource']['subject']['reference'] = PATIENT + '/_history/2'
    d_('document-reference-unknown-version', unknown_version,
       'the Composition\'s subject names version 2 of the Patient; the document carries version 1',
       [issue(E, 'not-found', 'Bundle.entry[0].resource.subject.reference', "meta.versionId")])

def valid():
    '''Bundles that must draw no error: official ones of each type, and reshaped ones.'''
    k = 'valid'
    for name in ('Bundle-bundle-example.json', 'Bundle-bundle-transaction.json', 'Bundle-bundle-response.json',
                 'Bundle-father.json', 'Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json'):
        doc = load(name)
        emit(k, doc['type'], name, doc, 'none: the official %s Bundle' % doc['type'], [])
    d = load('Bundle-bundle-example.json')
    d['link'][0]['url'] = 'https://example.com/base?_type=Observation,MedicationRequest&patient=347'
    emit(k, 'searchset-type-parameter', 'Bundle-bundle-example.json', d,
         'none: the self link searches two types with _type, the match is one of them', [])
    d = load('Bundle-father.json')
    two_patient_versions(d)
    emit(k, 'document-versioned-references', 'Bundle-father.json', d,
         'none: the Patient in versions 1 and 2, every reference to it version-specific', [])
    p = patient()
    url = 'http://example.org/fhir/Patient/' + p['id']
    v1, v2 = copy.deepcopy(p), copy.deepcopy(p)
    v1['meta'] = {'versionId': '1', 'lastUpdated': '2020-01-01T10:00:00Z'}
    v2['meta'] = {'versionId': '2', 'lastUpdated': '2020-02-01T10:00:00Z'}
    v2['active'] = False
    history = {'resourceType': 'Bundle', 'id': 'patient-history', 'type': 'history', 'total': 3,
               'link': [{'relation': 'self', 'url': url + '/_history'}],
               'entry': [{'request': {'method': 'DELETE', 'url': 'Patient/' + p['id']},
                          'response': {'status': '204 No Content', 'lastModified': '2020-03-01T10:00:00Z'}},
                         {'fullUrl': url, 'resource': v2, 'request': {'method': 'PUT', 'url': 'Patient/' + p['id']},
                          'response': {'status': '200 OK', 'etag': 'W/"2"', 'lastModified': '2020-02-01T10:00:00Z'}},
                         {'fullUrl': url, 'resource': v1, 'request': {'method': 'POST', 'url': 'Patient'},
                          'response': {'status': '201 Created', 'etag': 'W/"1"', 'lastModified': '2020-01-01T10:00:00Z'}}]}
    emit(k, 'history', 'Patient-example.json', history,
         'none: a history of Patient-example (create, update, delete), the same fullUrl in two versions', [])

def references():
    k = 'references'
    E, W = 'error', 'warning'
    doc = load('Bundle-father.json')
    d = copy.deepcopy(doc)
    d['entry'][0]['resource']['encounter']['reference'] = 'http://fhir.healthintersections.com.au/open/Patient/d1'
    emit(k, 'bundle-target-type', 'Bundle-father.json', d, 'the Composition\'s encounter resolves to a Patient entry',
         [issue(E, 'structure', 'Bundle.entry[0].resource.encounter.reference', 'points to a Patient')])
    d = copy.deepcopy(doc)
    d['entry'][0]['resource']['author'][0]['reference'] = 'urn:uuid:541a72a8-df75-4484-ac89-ac4923f03b81'
    emit(k, 'bundle-author-observation', 'Bundle-father.json', d, 'the Composition\'s author resolves to an Observation entry',
         [issue(E, 'structure', 'Bundle.entry[0].resource.author[0].reference', 'points to a Observation')])
    d = copy.deepcopy(doc)
    d['entry'][0]['resource']['subject']['type'] = 'Group'
    emit(k, 'reference-type-disagrees', 'Bundle-father.json', d, 'Reference.type Group on a reference to a Patient entry',
         [issue(E, 'value', 'Bundle.entry[0].resource.subject.reference', "type says 'Group'")])
    cp = load('CarePlan-example.json')
    d = copy.deepcopy(cp)
    d['subject'] = {'reference': '#' + cp['contained'][0]['id']}
    emit(k, 'contained-target-type', 'CarePlan-example.json', d,
         'the subject points to the contained %s' % cp['contained'][0]['resourceType'],
         [issue(E, 'structure', 'CarePlan.subject.reference', 'points to a %s' % cp['contained'][0]['resourceType'])])
    p = patient()
    d = copy.deepcopy(p)
    d['managingOrganization']['reference'] = 'Practitioner/1'
    emit(k, 'literal-target-type', 'Patient-example.json', d, 'managingOrganization names a Practitioner (not resolvable here: a warning)',
         [issue(W, 'structure', 'Patient.managingOrganization.reference', 'points to a Practitioner')])
    d = copy.deepcopy(p)
    d['managingOrganization']['type'] = 'Practitioner'
    emit(k, 'literal-reference-type', 'Patient-example.json', d, 'Reference.type Practitioner on Organization/1 (a warning: unresolved)',
         [issue(W, 'value', 'Patient.managingOrganization.reference', "type says 'Practitioner'")])
    import base64, hashlib
    raw = b'Peter James Chalmers'
    good = {'contentType': 'text/plain', 'data': base64.b64encode(raw).decode(), 'size': len(raw),
            'hash': base64.b64encode(hashlib.sha1(raw).digest()).decode()}
    def photo(slug, change, defect, issues):
        d = copy.deepcopy(p)
        a = dict(good)
        a.update(change)
        d['photo'] = [a]
        emit(k, slug, 'Patient-example.json', d, defect, issues)
    photo('attachment-size', {'size': len(raw) + 1}, 'Attachment.size one more than the data holds',
          [issue(E, 'value', 'Patient.photo[0].size', 'holds %d bytes' % len(raw))])
    photo('attachment-hash', {'hash': base64.b64encode(hashlib.sha1(raw + b'!').digest()).decode()},
          'Attachment.hash the SHA-1 of other bytes', [issue(E, 'value', 'Patient.photo[0].hash', 'not the SHA-1')])
    photo('attachment-hash-hex', {'hash': hashlib.sha1(raw).hexdigest()},
          'Attachment.hash as hex rather than base64 (a warning: it cannot be compared)',
          [issue(W, 'value', 'Patient.photo[0].hash', 'not a base64 SHA-1')])

KINDS = {'narrative': narrative, 'strings': strings, 'extensions': extensions, 'bundles': bundles, 'references': references,
         'valid': valid}
for name in sys.argv[2:] or KINDS:
    KINDS[name]()
with open(os.path.join(OUT, 'manifest.json'), 'w') as f:
    json.dump(manifest, f, indent=1, ensure_ascii=False)
    f.write('\n')
print(counters)
