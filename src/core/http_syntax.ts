/** What HTTP allows in a method, a header name and a header value (RFC 9110 §5.5, §5.6.2). */

/** RFC 9110 §5.6.2 token: what a method and a header name must be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A field value: visible characters, spaces, tabs and obs-text; never CR, LF or NUL. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

export const isToken = (text: string): boolean => TOKEN.test(text);
export const isFieldValue = (text: string): boolean => FIELD_VALUE.test(text);
