// The port of the JSON API on the host this page came from. `blendfarm serve` answers /config.js
// itself with the port it listens on; this file is the fallback when the pages are served some
// other way (the API is always on the same host as the dashboard, never anywhere else).
window.BLENDFARM_API_PORT = window.BLENDFARM_API_PORT || 2254;
