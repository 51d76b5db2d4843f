<?php
// Publish to ssehub from PHP with the curl extension (Debian: php-curl).
//
//   SSEHUB_URL=https://sse.example.com SSEHUB_TOKEN=<admin JWT> \
//     php publish.php send-to-user '{"user_id":42,"event":"notification","data":{"n":1}}'
//
// Copy ssehub_publish() into your code. It returns the answer's "data"
// (["id" => ..., "recipients" => N] for a publish), throws SsehubError with
// ssehub's error code and message, and retries what may pass a moment
// later: 503 (waiting its Retry-After), 502/504 from the front server while
// ssehub restarts, and network errors.

const SSEHUB_ATTEMPTS = 5;      // 0.5 + 1 + 2 + 4 s of waiting at most, without Retry-After
const SSEHUB_MAX_WAIT_S = 30;   // cap on a server's Retry-After

class SsehubError extends RuntimeException
{
    public function __construct(public readonly int $status, public readonly string $errorCode, string $message)
    {
        parent::__construct("HTTP $status $errorCode: $message");
    }
}

/** POSTs $body to /api/sse/$route (broadcast, send-to-user, send-to-client,
 * disconnect) and returns the answer's "data". */
function ssehub_publish(string $route, array|object $body, ?string $url = null, ?string $token = null): array
{
    $url = rtrim($url ?? (getenv('SSEHUB_URL') ?: 'http://localhost'), '/') . '/api/sse/' . $route;
    $token = $token ?? (string) getenv('SSEHUB_TOKEN');
    $payload = json_encode($body, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR);
    for ($attempt = 1; ; $attempt++) {
        $retryAfter = '';
        $ch = curl_init($url);
        curl_setopt_array($ch, [
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => $payload,
            CURLOPT_HTTPHEADER => ["Authorization: Bearer $token", 'Content-Type: application/json'],
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_CONNECTTIMEOUT => 5,
            CURLOPT_TIMEOUT => 10,
            CURLOPT_HEADERFUNCTION => function ($ch, string $line) use (&$retryAfter): int {
                if (preg_match('/^Retry-After:\s*(\d+)\s*$/i', $line, $m)) {
                    $retryAfter = $m[1];
                }
                return strlen($line);
            },
        ]);
        $text = curl_exec($ch);
        $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        $curlError = curl_error($ch);
        curl_close($ch);
        $wait = 0.5 * 2 ** ($attempt - 1);
        if ($text === false) {
            if ($attempt === SSEHUB_ATTEMPTS) {
                throw new SsehubError(0, 'network', $curlError);
            }
        } elseif ($status >= 200 && $status < 300) {
            return json_decode($text, true, 512, JSON_THROW_ON_ERROR)['data'];
        } else {
            $answer = json_decode($text, true);
            $error = is_array($answer) && is_array($answer['error'] ?? null) ? $answer['error'] : null;
            $exception = $error
                ? new SsehubError($status, (string) $error['code'], (string) $error['message'])
                : new SsehubError($status, '', substr($text, 0, 200));   // a front server's error page
            if (!in_array($status, [502, 503, 504], true) || $attempt === SSEHUB_ATTEMPTS) {
                throw $exception;
            }
            if ($retryAfter !== '') {
                $wait = min((int) $retryAfter, SSEHUB_MAX_WAIT_S);
            }
        }
        usleep((int) ($wait * 1e6));
    }
}

if (PHP_SAPI === 'cli' && realpath($argv[0] ?? '') === __FILE__) {
    if ($argc !== 3) {
        fwrite(STDERR, "usage: publish.php ROUTE JSON   (SSEHUB_URL, SSEHUB_TOKEN in the environment)\n");
        exit(2);
    }
    try {
        // Objects stay objects ({} is not []), so the body goes out as given.
        $data = ssehub_publish($argv[1], json_decode($argv[2], false, 512, JSON_THROW_ON_ERROR));
        echo json_encode($data, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE), "\n";
    } catch (SsehubError $e) {
        fwrite(STDERR, 'ssehub: ' . $e->getMessage() . "\n");
        exit(1);
    }
}
