"""File formats shared by the stages: CrystFEL geometry, cell and stream files, CXI peak lists."""
