<?php
// Test harness for `php -S 127.0.0.1:<port> php-router.php`: answers, for
// each request, whether verify.php accepts its signature, with the
// X-Session-* headers and Host it received. The key comes from the
// SIGN_KEY environment variable.
require __DIR__ . '/../verify.php';
$headers = [];
foreach (getallheaders() as $name => $value) {
    if (str_starts_with(strtr(strtolower($name), '_.', '--'), 'x-session')) {
        $headers[] = [$name, $value];
    }
}
header('Content-Type: application/json');
echo json_encode([
    'valid' => verify_session_signature(getenv('SIGN_KEY'), 60),
    'host' => $_SERVER['HTTP_HOST'],
    'headers' => $headers,
]);
