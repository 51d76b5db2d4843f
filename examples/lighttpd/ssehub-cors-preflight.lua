-- Answers a CORS preflight (OPTIONS) for ssehub's URLs with 204 No Content.
-- ssehub itself answers OPTIONS with 405, which fails the preflight; the
-- Access-Control-* headers come from mod_setenv in ssehub-cors.conf.
-- lighttpd >= 1.4.60 with mod_magnet (Debian: lighttpd-modules-lua).
return 204
