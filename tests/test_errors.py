import pickle

from desilab.errors import ChecksumError, DesilabError, FormatError, InputError, SchemaError


def test_message_names_file_hdu_column():
    err = FormatError("missing column", file="coadd.fits", hdu="FIBERMAP", column="TARGETID")
    assert str(err) == "coadd.fits[FIBERMAP].TARGETID: missing column"
    assert isinstance(err, InputError) and isinstance(err, ValueError)
    assert err.to_dict()["column"] == "TARGETID"


def test_hierarchy_and_builtins():
    assert issubclass(SchemaError, FormatError)
    assert issubclass(ChecksumError, OSError)
    assert issubclass(FormatError, DesilabError)


def test_pickle_keeps_context():
    err = SchemaError("bad TFORM", file="f.fits", hdu=1, column="Z", hint="expected D")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is SchemaError
    assert str(back) == str(err)
    assert back.hdu == 1
