<?php
// verify_session_signature checks the X-Session-Signature header that
// caddy-session adds with sign_headers, for the current request (PHP 8).
// $key is the signing key, $maxSkew how far (seconds) the signature's
// time may be from now. Returns true or false.
function verify_session_signature(string $key, int $maxSkew = 60): bool
{
    $sig = null;
    $signatures = 0;
    $lines = [];
    // Header names as sent (getallheaders: Apache, FPM, the built-in
    // server); a repeated or re-spelled X-Session-* header breaks it.
    foreach (getallheaders() as $name => $value) {
        $n = strtolower($name);
        if ($n === 'x-session-signature') {
            $sig = $value;
            $signatures++;
        } elseif (str_starts_with(strtr($n, '_.', '--'), 'x-session')) {
            $lines[] = $n . ':' . $value;
        }
    }
    if ($signatures !== 1) {
        return false;
    }
    $ts = '';
    $mac = '';
    foreach (explode(',', $sig) as $part) {
        [$k, $v] = array_pad(explode('=', trim($part), 2), 2, '');
        if ($k === 't') {
            $ts = $v;
        } elseif ($k === 'v1') {
            $mac = strtolower($v);
        }
    }
    if (!ctype_digit($ts) || strlen($mac) !== 64 || abs(time() - (int) $ts) > $maxSkew) {
        return false;
    }
    sort($lines, SORT_STRING);
    $path = explode('?', $_SERVER['REQUEST_URI'], 2)[0];
    $text = '';
    foreach (array_merge(['caddy-session-v1', $ts, $_SERVER['REQUEST_METHOD'], $_SERVER['HTTP_HOST'], $path], $lines) as $s) {
        $text .= $s . "\n";
    }
    return hash_equals(hash_hmac('sha256', $text, $key), $mac);
}
