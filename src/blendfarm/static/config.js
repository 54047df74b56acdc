// Where the dashboard finds the JSON API. This default file says "port 2254 of the host this
// page came from"; a server running its API elsewhere may serve its own /config.js instead:
//   window.BLENDFARM_API_PORT = 3000;               // same host, another port
//   window.BLENDFARM_API = "http://10.0.0.5:2254";  // or a full URL
// `?api=URL` in the page address overrides both (remembered for the browser tab).
window.BLENDFARM_API_PORT = window.BLENDFARM_API_PORT || 2254;
