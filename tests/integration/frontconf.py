#!/usr/bin/python3
"""Renders the shipped front-server examples for a private nginx, lighttpd or
Apache httpd:
the one renderer of the integration harness, bench/run.sh and
bench/compare.py, so that tests and benches run exactly what users copy.

Only the documented substitution points of examples/nginx/ssehub.conf and
examples/lighttpd/ssehub.conf change (their header comments list them too;
scripts/demo.sh rewrites the same four nginx values with sed). Each point is
a literal value of the example, written exactly as below; it must be found
on the expected number of active (non-comment) lines, or rendering fails,
so an edit to an example cannot silently detach the tests from it. What a
private instance needs besides (pid file, logs, temporary paths, worker
sizes, bigger header buffers) goes around the rendered example, never into it.

nginx, examples/nginx/ssehub.conf (nginx_site):
  listen 80;                     -> listen LISTEN;  (address:port, options allowed)
  listen [::]:80;                -> left out (one private address)
  root /var/www/ssehub;          -> root ROOT;
  server unix:/run/ssehub/ssehub.sock;
                                 -> one "server UPSTREAM;" line per node, in
                                    both upstream blocks (unix:/path or host:port)
  $cookie_token, "token=         -> another --token-cookie name (the map)
  location /sse/ { ... }         -> only with stream_extra (a bench knob, off by
                                    default): a directive replaces the lines
                                    of the same name there, or is added

lighttpd, examples/lighttpd/ssehub.conf (lighttpd_site):
  variant A (bin-path) as it is, or variant B (external socket): A's
  fastcgi.server block left out, B's uncommented (what its README says to do)
  "/run/lighttpd/ssehub.sock"    -> the socket lighttpd binds (A)
  "bin-path" => "..."            -> the command line lighttpd starts (A)
  "/run/ssehub/ssehub.sock"      -> ssehub's own socket (B)
  server.max-fds = ..., server.max-connections = ...
                                 -> left out when write_lighttpd's extra sets
                                    them (the sizing of a private lighttpd)

Apache httpd, examples/apache/ssehub.conf (apache_site):
  <VirtualHost *:80>             -> <VirtualHost LISTEN>  (address:port)
  DocumentRoot /var/www/ssehub   -> DocumentRoot ROOT
  unix:/run/ssehub/ssehub.sock   -> the hub's socket on its 3 lines
  token= in the SetEnvIf Cookie line -> another --token-cookie name
  ${APACHE_LOG_DIR}              -> not replaced: write_apache defines it, as
                                    Debian's envvars does

Command line, for bench/run.sh (writes PREFIX/nginx.conf, PREFIX/site.conf,
PREFIX/fastcgi_params and PREFIX/tmp/; prints the nginx.conf path):

  frontconf.py nginx PREFIX --upstream unix:/p/ssehub.sock --listen '127.0.0.1:8080 reuseport'
               [--root DIR] [--workers N] [--connections N] [--nofile N]
               [--error-log-level LEVEL] [--no-access-log]
"""

import argparse
import re
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
NGINX_EXAMPLE = REPO_ROOT / "examples" / "nginx" / "ssehub.conf"
LIGHTTPD_EXAMPLE = REPO_ROOT / "examples" / "lighttpd" / "ssehub.conf"
APACHE_EXAMPLE = REPO_ROOT / "examples" / "apache" / "ssehub.conf"
APACHE_MODULES_DIR = Path("/etc/apache2/mods-available")
# What a fresh Debian 12 apache2 has enabled (a2query -m), then what the
# example's header says to a2enmod. Their .load and .conf files are read
# from the system, as Debian's apache2.conf reads mods-enabled/.
APACHE_DEFAULT_MODULES = ("mpm_event", "access_compat", "alias", "auth_basic", "authn_core", "authn_file",
                          "authz_core", "authz_host", "authz_user", "autoindex", "deflate", "dir", "env",
                          "filter", "mime", "negotiation", "reqtimeout", "setenvif", "status")
APACHE_EXAMPLE_MODULES = ("proxy", "proxy_fcgi", "headers")
NGINX_FASTCGI_PARAMS = Path("/etc/nginx/fastcgi_params")
NGINX_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class ExampleDrift(ValueError):
    """An example no longer holds a substitution point as documented."""


def _active(line):
    return not line.lstrip().startswith("#")


def _plain(value, what):
    """value goes into a config line: no quote, semicolon, brace or newline."""
    value = str(value)
    if not value or re.search(r'[";{}\n\r]', value):
        raise ValueError("%s %r cannot be written into a config line" % (what, value))
    return value


def _substitute(lines, old, new, count, source, whole_line=False):
    """Replaces old (a string, or a compiled pattern whose match is replaced
    by new) on the active lines; whole_line: lines that are exactly old,
    indentation kept, and new=None drops them. Exactly count lines must
    hold old."""
    pattern = old if isinstance(old, re.Pattern) else re.compile(re.escape(old))
    out, hits = [], 0
    for line in lines:
        hit = _active(line) and (line.strip() == old if whole_line else pattern.search(line))
        if not hit:
            out.append(line)
            continue
        hits += 1
        if new is None:
            continue
        if whole_line:
            out.append(line[:len(line) - len(line.lstrip())] + new)
        else:
            out.append(pattern.sub(lambda m: new, line))
    if hits != count:
        raise ExampleDrift("%s: %r on %d active lines, expected %d (see the renderer's docstring)" % (
            source, getattr(old, "pattern", old), hits, count))
    return out


def _index(lines, text, start, source, active):
    for i in range(start, len(lines)):
        if lines[i].strip() == text and _active(lines[i]) == active:
            return i
    raise ExampleDrift("%s: no %s line %r" % (source, "active" if active else "comment", text))


# ---------------------------------------------------------------- nginx


def nginx_site(upstream, listen, root, token_cookie="token", stream_extra=(), example=NGINX_EXAMPLE):
    """examples/nginx/ssehub.conf (the maps, the upstream and the server
    block, for inside http {}) with its substitution points replaced.
    upstream: fastcgi_pass syntax (unix:/path, host:port), or a list of
    them for several nodes (a cluster with --redis); listen: what
    follows "listen"; stream_extra: directives (without ';') for location
    /sse/ (see _stream_extra)."""
    source = str(example)
    lines = Path(example).read_text().split("\n")
    lines = _substitute(lines, "listen 80;", "listen %s;" % _plain(listen, "listen"), 1, source, True)
    lines = _substitute(lines, "listen [::]:80;", None, 1, source, True)
    lines = _substitute(lines, "root /var/www/ssehub;", "root %s;" % _plain(root, "root"), 1, source, True)
    nodes = [upstream] if isinstance(upstream, str) else list(upstream)
    lines = _servers(lines, [_plain(u, "upstream") for u in nodes], source)
    cookie = _plain(token_cookie, "token cookie")
    if not re.fullmatch(r"[A-Za-z0-9_]+", cookie):
        raise ValueError("token cookie %r is not an nginx variable name" % cookie)
    lines = _substitute(lines, "map $cookie_token ", "map $cookie_%s " % cookie, 1, source)
    lines = _substitute(lines, '"token=$cookie_token"', '"%s=$cookie_%s"' % (cookie, cookie), 1, source)
    return "\n".join(_stream_extra(lines, stream_extra, source))


def _servers(lines, nodes, source):
    """Each of the 2 "server unix:/run/ssehub/ssehub.sock;" lines (the two
    upstream blocks) becomes one server line per node."""
    out, hits = [], 0
    for line in lines:
        if _active(line) and line.strip() == "server unix:/run/ssehub/ssehub.sock;":
            pad = line[:len(line) - len(line.lstrip())]
            out += ["%sserver %s;" % (pad, n) for n in nodes]
            hits += 1
        else:
            out.append(line)
    if hits != 2:
        raise ExampleDrift("%s: expected 2 lines 'server unix:/run/ssehub/ssehub.sock;', found %d" % (source, hits))
    return out


def _stream_extra(lines, directives, source):
    """Each directive replaces the lines of location /sse/ that set the same
    name, or is added at its top when there is none."""
    start = _index(lines, "location /sse/ {", 0, source, True)
    pad = lines[start][:len(lines[start]) - len(lines[start].lstrip())]
    end = _index(lines, "}", start, source, True)
    while lines[end][:len(pad) + 1] != pad + "}":
        end = _index(lines, "}", end + 1, source, True)
    block = lines[start + 1:end]
    for d in directives:
        d = _plain(d.strip().rstrip(";"), "directive")
        line = "%s    %s;" % (pad, d)
        sets = [k for k, x in enumerate(block) if _active(x) and x.split()[:1] == d.split()[:1]]
        for k in reversed(sets[1:]):
            del block[k]
        if sets:
            block[sets[0]] = line
        else:
            block.insert(0, line)
    return lines[:start + 1] + block + lines[end:]


def write_nginx(prefix, site, workers=1, worker_connections=1024, rlimit_nofile=None, user=None,
                error_log_level="info", access_log=True, main_extra=(), http_extra=()):
    """A private nginx in prefix around site (text for inside http {}):
    prefix/site.conf, prefix/nginx.conf, a copy of fastcgi_params (the
    example's "include fastcgi_params" is relative to nginx.conf) and
    prefix/tmp/. Logs: prefix/error.log, prefix/access.log (access_log
    False: none), pid prefix/nginx.pid. main_extra / http_extra: directives
    (without ';') for the main context (before everything) and http {}.
    Returns the path of nginx.conf."""
    p = Path(prefix)
    for sub in NGINX_TEMP_PATHS:
        (p / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(NGINX_FASTCGI_PARAMS, p / "fastcgi_params")
    (p / "site.conf").write_text(site)
    main = ["# Written by tests/integration/frontconf.py: a private nginx around site.conf."]
    main += ["%s;" % d for d in main_extra]
    main += ["daemon off;", "master_process on;", "worker_processes %d;" % workers]
    if user:
        main.append("user %s;" % user)
    if rlimit_nofile:
        main.append("worker_rlimit_nofile %d;" % rlimit_nofile)
    main += ["pid %s/nginx.pid;" % p, "error_log %s/error.log %s;" % (p, error_log_level),
             "events {", "    worker_connections %d;" % worker_connections, "}", "http {",
             "    access_log %s;" % ("%s/access.log" % p if access_log else "off")]
    main += ["    %s_temp_path %s/tmp/%s;" % (sub, p, sub) for sub in NGINX_TEMP_PATHS]
    main += ["    %s;" % d for d in http_extra]
    main += ["    include %s/site.conf;" % p, "}", ""]
    conf = p / "nginx.conf"
    conf.write_text("\n".join(main))
    return conf


# ---------------------------------------------------------------- lighttpd

# Server-wide settings examples/lighttpd/ssehub.conf sets (its sizing), each
# on one unindented line "NAME = VALUE".
LIGHTTPD_SIZING = ("server.max-fds", "server.max-connections")


def lighttpd_site(socket_path, bin_path=None, example=LIGHTTPD_EXAMPLE):
    """examples/lighttpd/ssehub.conf for one of its variants: bin_path given,
    variant A (lighttpd binds socket_path and starts bin_path on it);
    otherwise variant B (lighttpd connects to ssehub's socket_path, or to
    each of a list of them: one host block per node of a cluster)."""
    source = str(example)
    lines = Path(example).read_text().split("\n")
    sockets = [_plain(x, "socket path") for x in (socket_path if isinstance(socket_path, list) else [socket_path])]
    socket_path = sockets[0]
    if bin_path is not None:
        lines = _substitute(lines, '"/run/lighttpd/ssehub.sock"', '"%s"' % socket_path, 1, source)
        command = _plain(bin_path, "bin-path")
        lines = _substitute(lines, re.compile(r'(?<="bin-path")\s*=>\s*"[^"]*"'), ' => "%s"' % command,
                            1, source)
        return "\n".join(lines)
    a_start = _index(lines, "fastcgi.server = (", 0, source, True)
    a_end = _index(lines, ")", a_start, source, True)
    b_start = _index(lines, "# fastcgi.server = (", a_end, source, False)
    b_end = _index(lines, "# )", b_start, source, False)
    variant_b = [re.sub(r"^(\s*)# ?", r"\1", x, count=1) for x in lines[b_start:b_end + 1]]
    # one host block per node (a cluster), each with its own socket
    h_start = _index(variant_b, "(", 0, source, True)
    h_end = _index(variant_b, "),", h_start, source, True)
    block = variant_b[h_start:h_end + 1]
    hosts = []
    for path in sockets:
        hosts += _substitute(block, '"/run/ssehub/ssehub.sock"', '"%s"' % path, 1, source)
    variant_b = variant_b[:h_start] + hosts + variant_b[h_end + 1:]
    lines = lines[:a_start] + lines[a_end + 1:b_start] + variant_b + lines[b_end + 1:]
    return "\n".join(lines)


def write_lighttpd(prefix, host, port, site, extra=()):
    """A private lighttpd in prefix around site: prefix/site.conf,
    prefix/lighttpd.conf (document root prefix/htdocs, error log
    prefix/error.log, pid prefix/lighttpd.pid); extra: further lines.
    A line of extra that sets one of LIGHTTPD_SIZING ("server.max-fds = N")
    replaces the example's line: lighttpd refuses a second plain assignment,
    and this is how tests and benches size a private lighttpd.
    Returns the path of lighttpd.conf."""
    p = Path(prefix)
    (p / "htdocs").mkdir(parents=True, exist_ok=True)
    lines = site.split("\n")
    for line in extra:
        m = re.match(r"\s*([a-z.-]+)\s*=", line)
        if m and m.group(1) in LIGHTTPD_SIZING:
            lines = _substitute(lines, re.compile(r"^%s\s*=" % re.escape(m.group(1))), None, 1,
                                "site.conf")
    site = "\n".join(lines)
    (p / "site.conf").write_text(site)
    conf = p / "lighttpd.conf"
    conf.write_text("\n".join([
        "# Written by tests/integration/frontconf.py: a private lighttpd around site.conf.",
        'server.document-root = "%s/htdocs"' % p,
        'server.bind = "%s"' % host,
        "server.port = %d" % port,
        'server.errorlog = "%s/error.log"' % p,
        'server.pid-file = "%s/lighttpd.pid"' % p,
        'server.upload-dirs = ( "%s" )' % p,
        'include "%s/site.conf"' % p,
    ] + list(extra) + [""]))
    return conf


# ---------------------------------------------------------------- Apache httpd


def apache_site(socket_path, listen, root, token_cookie="token", example=APACHE_EXAMPLE):
    """examples/apache/ssehub.conf (one <VirtualHost>) with its substitution
    points replaced. socket_path: ssehub's unix socket; listen: the
    virtual host's address:port (write_apache adds the Listen line)."""
    source = str(example)
    lines = Path(example).read_text().split("\n")
    lines = _substitute(lines, "<VirtualHost *:80>", "<VirtualHost %s>" % _plain(listen, "listen"), 1, source, True)
    lines = _substitute(lines, "DocumentRoot /var/www/ssehub", "DocumentRoot %s" % _plain(root, "root"), 1,
                        source, True)
    lines = _substitute(lines, "unix:/run/ssehub/ssehub.sock", "unix:%s" % _plain(socket_path, "socket path"),
                        3, source)
    cookie = _plain(token_cookie, "token cookie")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", cookie):
        raise ValueError("token cookie %r cannot go into the example's SetEnvIf line" % cookie)
    lines = _substitute(lines, r'\s*token=([^;\s]+)" SSEHUB_TOKEN_COOKIE=token=$1',
                        r'\s*%s=([^;\s]+)" SSEHUB_TOKEN_COOKIE=%s=$1' % (cookie, cookie), 1, source)
    return "\n".join(lines)


def write_apache(prefix, site, listen, user=None, mpm=None, log_level="warn", modules_dir=APACHE_MODULES_DIR,
                 extra=()):
    """A private Apache httpd in prefix around site (one <VirtualHost>):
    prefix/site.conf and prefix/apache2.conf, a self-contained main
    configuration in the shape of Debian's apache2.conf (no APACHE_RUN_*
    variables needed): ServerRoot, DefaultRuntimeDir, pid prefix/apache2.pid,
    error log prefix/error.log (the example's virtual host logs to
    prefix/ssehub-error.log and prefix/ssehub-access.log), Listen listen,
    Debian's default modules plus the example's (Debian's .load and .conf
    files), prefix/htdocs. user: User and Group (needed when started as
    root). mpm: {directive: value} after Debian's mpm_event.conf (its
    defaults otherwise). extra: further lines before the site. Returns the
    path of apache2.conf."""
    p = Path(prefix)
    (p / "htdocs").mkdir(parents=True, exist_ok=True)
    (p / "site.conf").write_text(site)
    main = ["# Written by tests/integration/frontconf.py: a private Apache httpd around site.conf,",
            "# shaped like Debian's apache2.conf.",
            "ServerRoot %s" % p, "DefaultRuntimeDir %s" % p, "PidFile %s/apache2.pid" % p,
            "Mutex file:%s default" % p, "Define APACHE_LOG_DIR %s" % p,
            "ServerName localhost", "Listen %s" % _plain(listen, "listen"),
            "Timeout 300", "KeepAlive On", "MaxKeepAliveRequests 100", "KeepAliveTimeout 5",
            "HostnameLookups Off", "ErrorLog %s/error.log" % p, "LogLevel %s" % log_level]
    if user:
        main += ["User %s" % user, "Group %s" % user]
    for m in APACHE_DEFAULT_MODULES + APACHE_EXAMPLE_MODULES:
        load = Path(modules_dir) / ("%s.load" % m)
        if not load.exists():
            raise FileNotFoundError("%s (is apache2 installed?)" % load)
        main.append("Include %s" % load)
        if (Path(modules_dir) / ("%s.conf" % m)).exists():
            main.append("Include %s/%s.conf" % (modules_dir, m))
    main += ["%s %s" % (k, v) for k, v in (mpm or {}).items()]
    main += ["<Directory />", "    Options FollowSymLinks", "    AllowOverride None", "    Require all denied",
             "</Directory>", "<Directory %s/htdocs>" % p, "    Require all granted", "</Directory>",
             'LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\" \\"%{User-Agent}i\\"" combined']
    main += list(extra)
    main += ["Include %s/site.conf" % p, ""]
    conf = p / "apache2.conf"
    conf.write_text("\n".join(main))
    return conf


# ---------------------------------------------------------------- command line


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write a private nginx around examples/nginx/ssehub.conf.")
    sub = ap.add_subparsers(dest="front", required=True)
    n = sub.add_parser("nginx")
    n.add_argument("prefix")
    n.add_argument("--upstream", required=True, help="unix:/path or host:port of ssehub")
    n.add_argument("--listen", required=True, help="what follows 'listen', e.g. '127.0.0.1:8080 reuseport'")
    n.add_argument("--root", help="document root (default PREFIX/htdocs, created empty)")
    n.add_argument("--workers", type=int, default=1)
    n.add_argument("--connections", type=int, default=1024, help="worker_connections")
    n.add_argument("--nofile", type=int, help="worker_rlimit_nofile")
    n.add_argument("--error-log-level", default="info")
    n.add_argument("--no-access-log", action="store_true")
    a = ap.parse_args(argv)
    prefix = Path(a.prefix).resolve()
    root = a.root or prefix / "htdocs"
    Path(root).mkdir(parents=True, exist_ok=True)
    site = nginx_site(a.upstream, a.listen, root)
    print(write_nginx(prefix, site, a.workers, a.connections, a.nofile, error_log_level=a.error_log_level,
                      access_log=not a.no_access_log))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as exc:
        sys.exit("frontconf.py: %s" % exc)
