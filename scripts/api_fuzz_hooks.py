"""schemathesis hooks for scripts/api-fuzz.sh (loaded through SCHEMATHESIS_HOOKS=api_fuzz_hooks).

Negative data generation puts arbitrary bytes in extra headers, control characters included. RFC 9110
(section 5.5) allows none but horizontal tab in a field value, so the server's HTTP parser (hyper) answers
such a request with a bare `400` and `Connection: close` before the service sees it: correct HTTP, but
outside what the OpenAPI document describes (its 400 carries the JSON error envelope). These hooks
remove the control characters (and leading whitespace, which the client library refuses to send) from
generated header values, so that every generated request reaches the API and is judged against the
document.
"""

import schemathesis


def _clean(value):
    if not isinstance(value, str):
        return value
    kept = "".join(ch for ch in value if ch == "\t" or not (ord(ch) < 0x20 or ord(ch) == 0x7F))
    # The client library (requests) itself refuses to send a value that starts with whitespace, Unicode
    # whitespace such as U+00A0 included: such a case would end as a client-side "Network Error".
    return kept.lstrip()


@schemathesis.hook
def map_headers(context, headers):
    if headers is None:
        return headers
    return {name: _clean(value) for name, value in headers.items()}
