package query

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPI is the OpenAPI 3.1 document of the whole API, kept by hand beside
// the handlers (TestOpenAPI checks every route against it, and the
// responses and the contract's examples against its schemas).
//
//go:embed openapi.json
var openAPI []byte

// openapi serves GET /call-report/openapi.json, without a key: it says what
// the API is, not what it holds.
func (s *Server) openapi(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "public, max-age=300")
	return c.Blob(http.StatusOK, contentTypeJSON, openAPI)
}
